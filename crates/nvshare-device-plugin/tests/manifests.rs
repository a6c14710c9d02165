//! The Kubernetes manifests (docker/k8s) and the Dockerfile agree with the
//! binaries: every manifest parses; images, commands, paths, ports, env
//! names and the resource name are what the scheduler and the plugin expect
//! (their own command-line parsers read the DaemonSet's commands).

use crate::manifest_support::{
    container, copies_into_final_stage, docker_dir, env_names, env_of, host_path_at, manifests,
    one, str_of, strings,
};
use clap::Parser;
use nvshare_device_plugin::constants::{
    DEFAULT_DEVICE_PLUGIN_DIR, DEFAULT_HOST_LIB_DIR, IMAGE_BIN_DIR, IMAGE_REPOSITORY,
    IMAGE_STAGING_DIR, LIB_FILE_NAME, METRICS_PORT, RESOURCE_NAME, SCHEDULER_SOCKET,
    SCHEDULER_SOCKET_DIR, annotations, env,
};
use std::path::{Path, PathBuf};

const NAMESPACE: &str = "nvshare";
const SCHEDULER: &str = "nvshare-scheduler";
const PLUGIN: &str = "nvshare-device-plugin";

fn expected_image() -> String {
    format!("{IMAGE_REPOSITORY}:{}", env!("CARGO_PKG_VERSION"))
}

#[test]
fn every_manifest_parses_and_lives_in_the_namespace() {
    let all = manifests();
    for file in [
        "namespace.yaml",
        "daemonset.yaml",
        "service.yaml",
        "kustomization.yaml",
        "example-pod.yaml",
    ] {
        assert!(all.contains_key(file), "docker/k8s/{file} exists");
    }
    assert_eq!(str_of(&one("Namespace")["metadata"]["name"]), NAMESPACE);
    for (file, docs) in &all {
        for doc in docs {
            let kind = str_of(&doc["kind"]);
            assert!(
                doc["apiVersion"].is_string(),
                "{file}: {kind} has an apiVersion"
            );
            if matches!(
                kind,
                "DaemonSet" | "Service" | "ServiceAccount" | "Role" | "RoleBinding" | "ConfigMap"
            ) {
                assert_eq!(
                    doc["metadata"]["namespace"].as_str(),
                    Some(NAMESPACE),
                    "{file}: {kind}"
                );
            }
        }
    }
}

#[test]
fn the_kustomization_installs_the_node_parts_with_our_image() {
    let k = one("Kustomization");
    let resources = strings(&k["resources"]);
    for file in &resources {
        assert!(
            docker_dir().join("k8s").join(file).is_file(),
            "{file} exists"
        );
    }
    assert!(resources.iter().any(|r| r == "daemonset.yaml"));
    assert!(
        !resources.iter().any(|r| r == "example-pod.yaml"),
        "the example is not installed"
    );
    let image = &k["images"][0];
    assert_eq!(str_of(&image["name"]), IMAGE_REPOSITORY);
    assert_eq!(str_of(&image["newTag"]), env!("CARGO_PKG_VERSION"));
}

#[test]
fn the_scheduler_container_listens_where_pods_and_metrics_look() {
    let ds = one("DaemonSet");
    let pod = &ds["spec"]["template"]["spec"];
    let scheduler = container(pod, SCHEDULER);
    assert_eq!(str_of(&scheduler["image"]), expected_image());

    let command = strings(&scheduler["command"]);
    assert_eq!(command[0], SCHEDULER);
    let cli = nvshare_scheduler::config::Cli::try_parse_from(&command)
        .unwrap_or_else(|e| panic!("the scheduler refuses the DaemonSet's command: {e}"));
    assert_eq!(cli.socket.as_deref(), Some(Path::new(SCHEDULER_SOCKET)));
    let metrics = cli.metrics_addr.expect("metrics are served");
    assert_eq!(metrics.port(), METRICS_PORT);
    assert!(
        metrics.ip().is_unspecified(),
        "reachable from the Service, not only localhost"
    );
    assert_eq!(
        scheduler["ports"][0]["containerPort"].as_u64(),
        Some(u64::from(METRICS_PORT))
    );
    assert_eq!(str_of(&scheduler["ports"][0]["name"]), "metrics");

    let known = env_names::<nvshare_scheduler::config::Cli>();
    let scheduler_env = env_of(scheduler);
    assert!(
        scheduler_env
            .iter()
            .any(|(name, _)| name == "NVIDIA_VISIBLE_DEVICES"),
        "the NVIDIA runtime mounts NVML, through which the scheduler finds the GPUs"
    );
    for (name, _) in scheduler_env {
        // NVIDIA_* are read by the NVIDIA container runtime.
        assert!(
            known.contains(&name) || name == "NVSHARE_DEBUG" || name.starts_with("NVIDIA_"),
            "the scheduler ignores env {name}"
        );
        assert_ne!(name, env::LD_PRELOAD, "the scheduler must not be hooked");
    }
    assert_eq!(
        host_path_at(pod, scheduler, SCHEDULER_SOCKET_DIR),
        Some((SCHEDULER_SOCKET_DIR.to_owned(), false)),
        "the socket directory is the node's"
    );
    let probe = strings(&scheduler["readinessProbe"]["exec"]["command"]);
    assert_eq!(probe[0], "nvshare-ctl");
    let socket_flag = probe
        .iter()
        .position(|a| a == "--socket")
        .expect("the probe names the socket");
    assert_eq!(probe[socket_flag + 1], SCHEDULER_SOCKET);
}

#[test]
fn the_plugin_container_installs_and_mounts_what_allocate_hands_out() {
    let ds = one("DaemonSet");
    let pod = &ds["spec"]["template"]["spec"];
    let plugin = container(pod, PLUGIN);
    assert_eq!(str_of(&plugin["image"]), expected_image());

    let command = strings(&plugin["command"]);
    assert_eq!(command[0], PLUGIN);
    let cli = nvshare_device_plugin::config::Cli::try_parse_from(&command)
        .unwrap_or_else(|e| panic!("the plugin refuses the DaemonSet's command: {e}"));
    let config = cli.into_config();
    assert_eq!(
        config.device_plugin_dir,
        Path::new(DEFAULT_DEVICE_PLUGIN_DIR)
    );
    assert_eq!(config.host_lib_dir, Path::new(DEFAULT_HOST_LIB_DIR));
    assert_eq!(
        config.allocation.scheduler_socket,
        Path::new(SCHEDULER_SOCKET)
    );
    let installed: Vec<PathBuf> = config.install.clone();
    assert!(
        installed.contains(&Path::new(IMAGE_STAGING_DIR).join(LIB_FILE_NAME)),
        "the plugin installs libnvshare.so from the image: {installed:?}"
    );

    // The plugin sees the node's directories at the node's paths: what it
    // installs and what it names in Allocate are the same files.
    let dir = config.device_plugin_dir.to_str().unwrap();
    assert_eq!(
        host_path_at(pod, plugin, dir),
        Some((dir.to_owned(), false))
    );
    let lib_dir = config.host_lib_dir.to_str().unwrap();
    assert_eq!(
        host_path_at(pod, plugin, lib_dir),
        Some((lib_dir.to_owned(), false))
    );
    let socket_dir = config.allocation.scheduler_socket_dir().to_str().unwrap();
    assert_eq!(socket_dir, SCHEDULER_SOCKET_DIR);
    assert!(host_path_at(pod, plugin, socket_dir).is_some_and(|(p, _)| p == socket_dir));

    let known = env_names::<nvshare_device_plugin::config::Cli>();
    for (name, value) in env_of(plugin) {
        if name.starts_with("NVIDIA_") {
            continue; // read by the NVIDIA container runtime
        }
        assert!(
            known.contains(&name) || name == "NVSHARE_DEBUG",
            "the plugin ignores env {name}"
        );
        if name == "NVSHARE_REPLICAS" {
            let value = value.expect("a literal replica count");
            let mut args = command.clone();
            args.extend(["--replicas".to_owned(), value.clone()]);
            assert!(
                nvshare_device_plugin::config::Cli::try_parse_from(&args).is_ok(),
                "NVSHARE_REPLICAS={value} is refused"
            );
        }
    }
    let nvidia: Vec<_> = env_of(plugin)
        .into_iter()
        .filter(|(n, _)| n == "NVIDIA_VISIBLE_DEVICES")
        .collect();
    assert_eq!(
        nvidia,
        [("NVIDIA_VISIBLE_DEVICES".to_owned(), Some("all".to_owned()))],
        "nvidia-smi sees every GPU"
    );
}

#[test]
fn metrics_are_scrapable_through_the_service_and_the_pods() {
    let ds = one("DaemonSet");
    let template = &ds["spec"]["template"];
    let service = one("Service");
    let selector = service["spec"]["selector"]
        .as_mapping()
        .expect("a selector");
    for (key, value) in selector {
        assert_eq!(
            &template["metadata"]["labels"][key], value,
            "the Service selects the DaemonSet's pods"
        );
    }
    let port = &service["spec"]["ports"][0];
    assert_eq!(port["port"].as_u64(), Some(u64::from(METRICS_PORT)));
    assert_eq!(str_of(&port["targetPort"]), "metrics");
    for annotations in [
        &service["metadata"]["annotations"],
        &template["metadata"]["annotations"],
    ] {
        assert_eq!(str_of(&annotations["prometheus.io/scrape"]), "true");
        assert_eq!(
            str_of(&annotations["prometheus.io/port"]),
            METRICS_PORT.to_string()
        );
        assert_eq!(str_of(&annotations["prometheus.io/path"]), "/metrics");
    }
}

#[test]
fn the_example_pod_asks_for_a_share_and_names_its_job() {
    let pod = one("Pod");
    let train = &pod["spec"]["containers"][0];
    assert_eq!(
        train["resources"]["limits"][RESOURCE_NAME].as_u64(),
        Some(1)
    );
    let name_env = train["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|e| e["name"].as_str() == Some(env::NVSHARE_NAME))
        .expect("NVSHARE_NAME set from the pod");
    assert_eq!(
        str_of(&name_env["valueFrom"]["fieldRef"]["fieldPath"]),
        "metadata.name"
    );
    for (name, _) in env_of(train) {
        assert!(
            ![
                env::LD_PRELOAD,
                env::NVSHARE_SOCK,
                env::NVIDIA_VISIBLE_DEVICES
            ]
            .contains(&name.as_str()),
            "the pod must not override the plugin's {name}"
        );
    }
}

#[test]
fn the_example_pod_hands_its_annotations_to_the_hook() {
    let pod = one("Pod");
    let train = &pod["spec"]["containers"][0];
    for (variable, annotation) in [
        (env::NVSHARE_PRIORITY, annotations::PRIORITY),
        (env::NVSHARE_WEIGHT, annotations::WEIGHT),
        (env::NVSHARE_MEMORY_LIMIT, annotations::MEMORY_LIMIT),
    ] {
        let entry = train["env"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|e| e["name"].as_str() == Some(variable))
            .unwrap_or_else(|| panic!("{variable} set from the pod"));
        assert_eq!(
            str_of(&entry["valueFrom"]["fieldRef"]["fieldPath"]),
            format!("metadata.annotations['{annotation}']")
        );
        assert!(
            pod["metadata"]["annotations"][annotation].is_string(),
            "the example shows {annotation}"
        );
    }
}

#[test]
fn the_image_holds_every_binary_and_staged_file_the_manifests_use() {
    let dockerfile = std::fs::read_to_string(docker_dir().join("Dockerfile")).unwrap();
    let copies = copies_into_final_stage(&dockerfile);
    let files_in = |dir: &str| -> Vec<String> {
        copies
            .iter()
            .filter(|(dest, _)| dest == dir)
            .flat_map(|(_, names)| names.clone())
            .collect()
    };
    let bin = files_in(IMAGE_BIN_DIR);
    for binary in [SCHEDULER, PLUGIN, "nvshare-ctl"] {
        assert!(
            bin.contains(&binary.to_owned()),
            "{binary} is in {IMAGE_BIN_DIR}: {copies:?}"
        );
    }
    let staged = files_in(IMAGE_STAGING_DIR);
    let ds = one("DaemonSet");
    let plugin = container(&ds["spec"]["template"]["spec"], PLUGIN);
    let config = nvshare_device_plugin::config::Cli::try_parse_from(strings(&plugin["command"]))
        .unwrap()
        .into_config();
    for file in &config.install {
        assert_eq!(
            file.parent(),
            Some(Path::new(IMAGE_STAGING_DIR)),
            "{}",
            file.display()
        );
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            staged.contains(&name),
            "the image stages {name}: {copies:?}"
        );
    }
    let build = std::fs::read_to_string(docker_dir().join("build.sh")).unwrap();
    assert!(
        build.contains("-p nvshare-device-plugin") && build.contains("-p nvshare-hook"),
        "docker/build.sh builds every package whose output is copied"
    );
}
