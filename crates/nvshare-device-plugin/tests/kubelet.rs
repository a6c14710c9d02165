//! The plugin binary against a fake kubelet: registration, ListAndWatch,
//! Allocate, GetPreferredAllocation, bad requests, and re-registration when
//! the kubelet restarts.

use crate::common::{FakeKubelet, Node, PATIENCE, Setup, next_list, wait_gone};
use nvshare_device_plugin::api::{
    AllocateRequest, ContainerAllocateRequest, ContainerPreferredAllocationRequest, Empty,
    PreferredAllocationRequest,
};
use nvshare_device_plugin::constants::{
    API_VERSION, CONTAINER_LIB_PATH, HEALTHY, MEMORY_PLUGIN_SOCKET_NAME, MEMORY_RESOURCE_NAME,
    PLUGIN_SOCKET_NAME, RESOURCE_NAME, UNHEALTHY, env,
};
use std::time::Duration;

const GPU_A: &str = "GPU-11111111-2222-3333-4444-555555555555";
const GPU_B: &str = "GPU-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee";
const GPU_C: &str = "GPU-cccccccc-0000-0000-0000-000000000000";

fn ids(gpu: &str, shares: std::ops::Range<u32>) -> Vec<String> {
    shares.map(|k| format!("{gpu}__{k}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registers_with_the_resource_name_and_version_and_exits_cleanly() {
    let node = Node::new(&[GPU_A]);
    let mut kubelet = FakeKubelet::start(&node);
    let plugin = node.spawn_plugin(&[]);

    let registration = kubelet.next_registration().await;
    assert_eq!(registration.version, API_VERSION);
    assert_eq!(registration.version, "v1beta1");
    assert_eq!(registration.resource_name, RESOURCE_NAME);
    assert_eq!(registration.resource_name, "nvshare.com/gpu");
    assert_eq!(registration.endpoint, PLUGIN_SOCKET_NAME);
    let options = registration.options.expect("options sent");
    assert!(options.get_preferred_allocation_available);
    assert!(!options.pre_start_required);
    assert_eq!(
        std::fs::read(node.lib_dir().join("libnvshare.so")).unwrap(),
        b"\x7fELF test hook",
        "the hook was installed on the node before registering"
    );

    let status = plugin.terminate();
    assert!(status.success(), "SIGTERM exits 0: {status}");
    assert!(
        !node.plugin_socket().exists(),
        "the plugin removes its socket"
    );
    kubelet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_and_watch_reports_every_share_then_health_changes() {
    let node = Node::new(&[GPU_B, GPU_A]);
    let mut kubelet = FakeKubelet::start(&node);
    let _plugin = node.spawn_plugin(&[]);
    kubelet.next_registration().await;
    let mut client = node.plugin_client().await;
    let mut stream = client.list_and_watch(Empty {}).await.unwrap().into_inner();

    let first = next_list(&mut stream).await;
    let expected: Vec<(String, String)> = ids(GPU_A, 0..3)
        .into_iter()
        .chain(ids(GPU_B, 0..3))
        .map(|id| (id, HEALTHY.to_owned()))
        .collect();
    assert_eq!(first, expected, "3 replicas x 2 GPUs, all healthy");

    node.set_gpus(&[GPU_B]);
    let second = next_list(&mut stream).await;
    assert_eq!(second.len(), 6, "a vanished GPU's shares stay listed");
    for (id, health) in &second {
        let want = if id.starts_with(GPU_A) {
            UNHEALTHY
        } else {
            HEALTHY
        };
        assert_eq!(health, want, "{id}");
    }

    node.set_gpus(&[GPU_A, GPU_B, GPU_C]);
    let third = next_list(&mut stream).await;
    assert_eq!(third.len(), 9);
    assert!(
        third.iter().all(|(_, health)| health == HEALTHY),
        "{third:?}"
    );
    kubelet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allocate_mounts_the_hook_and_socket_and_sets_the_environment() {
    let node = Node::new(&[GPU_A, GPU_B]);
    let mut kubelet = FakeKubelet::start(&node);
    let _plugin = node.spawn_plugin(&["--scheduler-socket", "/run/nvshare-test/scheduler.sock"]);
    kubelet.next_registration().await;
    let mut client = node.plugin_client().await;

    let request = AllocateRequest {
        container_requests: vec![
            ContainerAllocateRequest {
                devices_ids: vec![format!("{GPU_B}__2")],
            },
            ContainerAllocateRequest {
                devices_ids: vec![
                    format!("{GPU_A}__0"),
                    format!("{GPU_B}__1"),
                    format!("{GPU_A}__2"),
                ],
            },
        ],
    };
    let response = client.allocate(request).await.unwrap().into_inner();
    assert_eq!(response.container_responses.len(), 2);
    let visible: Vec<&str> = response
        .container_responses
        .iter()
        .map(|c| c.envs[env::NVIDIA_VISIBLE_DEVICES].as_str())
        .collect();
    assert_eq!(visible, [GPU_B.to_owned(), format!("{GPU_A},{GPU_B}")]);

    let host_lib = node.lib_dir().join("libnvshare.so").display().to_string();
    for container in &response.container_responses {
        assert_eq!(container.envs[env::LD_PRELOAD], CONTAINER_LIB_PATH);
        assert_eq!(
            container.envs[env::NVSHARE_SOCK],
            "/run/nvshare-test/scheduler.sock"
        );
        assert_eq!(container.envs[env::NVSHARE_SCHEDULER], "external");
        assert!(!container.envs.contains_key(env::NVSHARE_NAME));
        let mounts: Vec<(&str, &str, bool)> = container
            .mounts
            .iter()
            .map(|m| (m.host_path.as_str(), m.container_path.as_str(), m.read_only))
            .collect();
        assert_eq!(
            mounts,
            [
                (host_lib.as_str(), CONTAINER_LIB_PATH, true),
                ("/run/nvshare-test", "/run/nvshare-test", true)
            ]
        );
    }
    kubelet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preferred_allocation_spreads_over_gpus() {
    let node = Node::new(&[GPU_A, GPU_B]);
    let mut kubelet = FakeKubelet::start(&node);
    let _plugin = node.spawn_plugin(&[]);
    kubelet.next_registration().await;
    let mut client = node.plugin_client().await;

    let mut available = ids(GPU_A, 1..2);
    available.extend(ids(GPU_B, 0..3));
    let response = client
        .get_preferred_allocation(PreferredAllocationRequest {
            container_requests: vec![
                ContainerPreferredAllocationRequest {
                    available_device_i_ds: available.clone(),
                    must_include_device_i_ds: vec![],
                    allocation_size: 1,
                },
                ContainerPreferredAllocationRequest {
                    available_device_i_ds: available,
                    must_include_device_i_ds: vec![],
                    allocation_size: 2,
                },
            ],
        })
        .await
        .unwrap()
        .into_inner();
    let picks: Vec<Vec<String>> = response
        .container_responses
        .into_iter()
        .map(|c| c.device_i_ds)
        .collect();
    assert_eq!(
        picks[0],
        [format!("{GPU_B}__0")],
        "the GPU with most free shares"
    );
    assert_eq!(
        picks[1],
        [format!("{GPU_B}__0"), format!("{GPU_A}__1")],
        "two GPUs"
    );
    kubelet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_grpc_errors_and_the_plugin_keeps_serving() {
    let node = Node::new(&[GPU_A]);
    let mut kubelet = FakeKubelet::start(&node);
    let _plugin = node.spawn_plugin(&[]);
    kubelet.next_registration().await;
    let mut client = node.plugin_client().await;

    let allocate = |ids: Vec<String>| AllocateRequest {
        container_requests: vec![ContainerAllocateRequest { devices_ids: ids }],
    };
    for bad in [
        vec![format!("{GPU_C}__0")],
        vec![format!("{GPU_A}__3")],
        vec![format!("{GPU_A}__0"), "nonsense".to_owned()],
        vec![String::new()],
        vec![],
    ] {
        let status = client.allocate(allocate(bad.clone())).await.unwrap_err();
        assert_eq!(
            status.code(),
            tonic::Code::InvalidArgument,
            "{bad:?}: {status}"
        );
    }
    let status = client
        .get_preferred_allocation(PreferredAllocationRequest {
            container_requests: vec![ContainerPreferredAllocationRequest {
                available_device_i_ds: ids(GPU_A, 0..3),
                must_include_device_i_ds: vec![],
                allocation_size: -1,
            }],
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);

    node.set_gpus(&[]);
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        match client.allocate(allocate(ids(GPU_A, 0..1))).await {
            Err(status) if status.code() == tonic::Code::FailedPrecondition => break,
            Ok(_) => assert!(
                std::time::Instant::now() < deadline,
                "the vanished GPU was still allocated"
            ),
            Err(status) => panic!("unexpected {status}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    client
        .get_device_plugin_options(Empty {})
        .await
        .expect("still serving");
    kubelet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allocate_refuses_when_the_hook_is_not_on_the_node() {
    let node = Node::new(&[GPU_A]);
    let mut kubelet = FakeKubelet::start(&node);
    let _plugin = node.spawn_plugin_with(
        &[],
        Setup {
            no_install: true,
            ..Setup::default()
        },
    );
    kubelet.next_registration().await;
    let mut client = node.plugin_client().await;
    let status = client
        .allocate(AllocateRequest {
            container_requests: vec![ContainerAllocateRequest {
                devices_ids: ids(GPU_A, 0..1),
            }],
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    assert!(status.message().contains("libnvshare.so"), "{status}");
    kubelet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registers_again_when_the_kubelet_restarts() {
    let node = Node::new(&[GPU_A]);
    let mut kubelet = FakeKubelet::start(&node);
    let plugin = node.spawn_plugin(&[]);
    kubelet.next_registration().await;

    // A restarting kubelet: its socket goes, every plugin socket is
    // removed, and a new socket appears.
    kubelet.stop().await;
    std::fs::remove_file(node.plugin_socket()).unwrap();
    let mut kubelet = FakeKubelet::start(&node);
    let again = kubelet.next_registration().await;
    assert_eq!(again.resource_name, RESOURCE_NAME);
    let mut client = node.plugin_client().await;
    let mut stream = client.list_and_watch(Empty {}).await.unwrap().into_inner();
    assert_eq!(
        next_list(&mut stream).await.len(),
        3,
        "the new server serves the devices"
    );

    // Only kubelet.sock recreated, our socket left alone: register again too.
    kubelet.stop().await;
    let mut kubelet = FakeKubelet::start(&node);
    kubelet.next_registration().await;
    assert!(
        !kubelet.registers_within(Duration::from_secs(2)).await,
        "one registration per kubelet start"
    );

    assert!(plugin.terminate().success());
    assert!(wait_gone(&node.plugin_socket()).await);
    kubelet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waits_for_a_kubelet_that_starts_later() {
    let node = Node::new(&[GPU_A]);
    let _plugin = node.spawn_plugin(&[]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut kubelet = FakeKubelet::start(&node);
    assert_eq!(
        kubelet.next_registration().await.resource_name,
        RESOURCE_NAME
    );
    kubelet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_nvidia_smi_means_no_devices_but_a_registered_plugin() {
    let node = Node::new(&[GPU_A]);
    let mut kubelet = FakeKubelet::start(&node);
    let plugin = node.spawn_plugin_with(
        &["--nvidia-smi", "/nonexistent/nvidia-smi"],
        Setup {
            no_gpu_list_file: true,
            ..Setup::default()
        },
    );
    kubelet.next_registration().await;
    let mut client = node.plugin_client().await;
    let mut stream = client.list_and_watch(Empty {}).await.unwrap().into_inner();
    assert_eq!(next_list(&mut stream).await, vec![], "no GPUs, no devices");
    assert!(
        plugin
            .log()
            .contains("/nonexistent/nvidia-smi was not found"),
        "{}",
        plugin.log()
    );
    kubelet.stop().await;
}

/// With `--memory-unit`, GPU memory is a second resource on a socket of its
/// own: each GPU's memory in units, whose count a container asks for
/// becomes its memory limit; shares work as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_units_are_a_second_resource_that_sets_the_memory_limit() {
    let node = Node::new(&[GPU_A, GPU_B]);
    let mut kubelet = FakeKubelet::start(&node);
    let plugin = node.spawn_plugin(&["--memory-unit", "1GiB", "--gpu-memory", "4GiB"]);
    let mut registered: Vec<(String, String)> = Vec::new();
    for _ in 0..2 {
        let r = kubelet.next_registration().await;
        registered.push((r.resource_name, r.endpoint));
    }
    registered.sort();
    assert_eq!(
        registered,
        [
            (RESOURCE_NAME.to_owned(), PLUGIN_SOCKET_NAME.to_owned()),
            (
                MEMORY_RESOURCE_NAME.to_owned(),
                MEMORY_PLUGIN_SOCKET_NAME.to_owned()
            ),
        ]
    );
    assert_eq!(MEMORY_RESOURCE_NAME, "nvshare.com/gpumem");

    let mut memory = node.memory_client().await;
    let mut stream = memory.list_and_watch(Empty {}).await.unwrap().into_inner();
    let units: Vec<String> = next_list(&mut stream)
        .await
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let expected: Vec<String> = [GPU_A, GPU_B]
        .iter()
        .flat_map(|gpu| (0..4).map(move |k| format!("{gpu}__mem{k}")))
        .collect();
    assert_eq!(units, expected, "4 GiB in 1 GiB units on each GPU");

    let preferred = memory
        .get_preferred_allocation(PreferredAllocationRequest {
            container_requests: vec![ContainerPreferredAllocationRequest {
                available_device_i_ds: units.clone(),
                must_include_device_i_ds: vec![],
                allocation_size: 3,
            }],
        })
        .await
        .unwrap()
        .into_inner();
    let picked = &preferred.container_responses[0].device_i_ds;
    assert_eq!(picked.len(), 3);
    assert!(
        picked.iter().all(|id| id.starts_with(GPU_A)),
        "one GPU's units: {picked:?}"
    );

    let allocated = memory
        .allocate(AllocateRequest {
            container_requests: vec![ContainerAllocateRequest {
                devices_ids: picked.clone(),
            }],
        })
        .await
        .unwrap()
        .into_inner();
    let envs = &allocated.container_responses[0].envs;
    assert_eq!(envs[env::NVSHARE_MEMORY_LIMIT], "3072MiB");
    assert!(
        !envs.contains_key(env::LD_PRELOAD),
        "the share loads the hook"
    );

    // Share IDs are not memory units, and the other way round.
    let refused = memory
        .allocate(AllocateRequest {
            container_requests: vec![ContainerAllocateRequest {
                devices_ids: ids(GPU_A, 0..1),
            }],
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert!(
        refused.message().contains(MEMORY_RESOURCE_NAME),
        "{}",
        refused.message()
    );
    let mut shares = node.plugin_client().await;
    let refused = shares
        .allocate(AllocateRequest {
            container_requests: vec![ContainerAllocateRequest {
                devices_ids: vec![format!("{GPU_A}__mem0")],
            }],
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);

    // A vanished GPU's units turn Unhealthy with its shares.
    node.set_gpus(&[GPU_B]);
    let after = next_list(&mut stream).await;
    for (id, health) in &after {
        let want = if id.starts_with(GPU_A) {
            UNHEALTHY
        } else {
            HEALTHY
        };
        assert_eq!(health, want, "{id}");
    }

    let status = plugin.terminate();
    assert!(status.success(), "SIGTERM exits 0: {status}");
    assert!(!node.plugin_dir().join(MEMORY_PLUGIN_SOCKET_NAME).exists());
    kubelet.stop().await;
}

/// NVML tells each GPU's memory: no `--gpu-memory` is needed then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_units_follow_the_memory_nvml_reports() {
    let node = Node::new(&[]);
    let mut kubelet = FakeKubelet::start(&node);
    let nvml = cuda_programs::artifacts::artifact("libnvidia_ml.so");
    let nvml = nvml.display().to_string();
    let _plugin = node.spawn_plugin_with(
        &["--nvml-library", &nvml, "--memory-unit", "4GiB"],
        Setup {
            no_gpu_list_file: true,
            ..Setup::default()
        },
    );
    kubelet.next_registration().await;
    kubelet.next_registration().await;
    let mut memory = node.memory_client().await;
    let mut stream = memory.list_and_watch(Empty {}).await.unwrap().into_inner();
    // The fake NVML's one GPU has 16 GiB.
    let gpu = "GPU-46414b45-4355-4441-0000-000000000001";
    let expected: Vec<(String, String)> = (0..4)
        .map(|k| (format!("{gpu}__mem{k}"), HEALTHY.to_owned()))
        .collect();
    assert_eq!(next_list(&mut stream).await, expected);
    kubelet.stop().await;
}
