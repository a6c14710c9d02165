//! Reading the Kubernetes manifests and the Dockerfile for the manifest
//! test: YAML documents as `serde_yaml::Value`, and small accessors.

use clap::CommandFactory;
use serde::Deserialize as _;
use serde_yaml::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub fn docker_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docker")
}

/// Every document of every YAML file under docker/k8s, by file name.
pub fn manifests() -> BTreeMap<String, Vec<Value>> {
    let mut all = BTreeMap::new();
    for entry in std::fs::read_dir(docker_dir().join("k8s")).expect("docker/k8s exists") {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let docs: Vec<Value> = serde_yaml::Deserializer::from_str(&text)
            .map(|doc| {
                Value::deserialize(doc)
                    .unwrap_or_else(|e| panic!("{} does not parse: {e}", path.display()))
            })
            .filter(|doc| !doc.is_null())
            .collect();
        assert!(!docs.is_empty(), "{} is empty", path.display());
        all.insert(
            path.file_name().unwrap().to_string_lossy().into_owned(),
            docs,
        );
    }
    all
}

pub fn kind_docs(kind: &str) -> Vec<Value> {
    manifests()
        .into_values()
        .flatten()
        .filter(|d| d["kind"].as_str() == Some(kind))
        .collect()
}

pub fn one(kind: &str) -> Value {
    let mut docs = kind_docs(kind);
    assert_eq!(docs.len(), 1, "exactly one {kind}");
    docs.pop().unwrap()
}

pub fn str_of(v: &Value) -> &str {
    v.as_str()
        .unwrap_or_else(|| panic!("expected a string, got {v:?}"))
}

pub fn strings(v: &Value) -> Vec<String> {
    v.as_sequence()
        .unwrap_or_else(|| panic!("expected a list, got {v:?}"))
        .iter()
        .map(|s| str_of(s).to_owned())
        .collect()
}

pub fn container<'a>(pod_spec: &'a Value, name: &str) -> &'a Value {
    pod_spec["containers"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|c| c["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no container {name}"))
}

/// (name, value) of every env entry with a literal value.
pub fn env_of(container: &Value) -> Vec<(String, Option<String>)> {
    container["env"]
        .as_sequence()
        .map(|envs| {
            envs.iter()
                .map(|e| {
                    (
                        str_of(&e["name"]).to_owned(),
                        e["value"].as_str().map(str::to_owned),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The node path behind a container's mount at `mount_path`, and whether
/// the mount is read-only.
pub fn host_path_at(
    pod_spec: &Value,
    container: &Value,
    mount_path: &str,
) -> Option<(String, bool)> {
    let mount = container["volumeMounts"]
        .as_sequence()?
        .iter()
        .find(|m| m["mountPath"].as_str() == Some(mount_path))?;
    let volume = pod_spec["volumes"]
        .as_sequence()?
        .iter()
        .find(|v| v["name"] == mount["name"])
        .unwrap_or_else(|| panic!("mount {mount_path} names no volume"));
    let read_only = mount["readOnly"].as_bool().unwrap_or(false);
    Some((str_of(&volume["hostPath"]["path"]).to_owned(), read_only))
}

/// Env names a clap command reads.
pub fn env_names<C: CommandFactory>() -> Vec<String> {
    C::command()
        .get_arguments()
        .filter_map(|a| a.get_env())
        .map(|e| e.to_string_lossy().into_owned())
        .collect()
}

/// `COPY SRC... DEST/` lines of the final stage: (dest, file names).
pub fn copies_into_final_stage(dockerfile: &str) -> Vec<(String, Vec<String>)> {
    let final_stage = dockerfile.rsplit("\nFROM ").next().unwrap();
    final_stage
        .lines()
        .filter_map(|line| line.strip_prefix("COPY "))
        .map(|rest| {
            let mut words: Vec<&str> = rest.split_whitespace().collect();
            let dest = words.pop().unwrap().trim_end_matches('/').to_owned();
            let names = words
                .iter()
                .map(|w| {
                    Path::new(w)
                        .file_name()
                        .unwrap()
                        .to_string_lossy()
                        .into_owned()
                })
                .collect();
            (dest, names)
        })
        .collect()
}
