//! The `DevicePlugin` gRPC service the kubelet calls on the plugin's
//! socket: one per resource ([`Resource`]), each on its own socket.

use crate::allocation::{AllocationSettings, memory_response};
use crate::api::device_plugin_server::DevicePlugin;
use crate::api::{
    AllocateRequest, AllocateResponse, ContainerPreferredAllocationResponse, Device,
    DevicePluginOptions, Empty, ListAndWatchResponse, PreStartContainerRequest,
    PreStartContainerResponse, PreferredAllocationRequest, PreferredAllocationResponse,
};
use crate::constants::{
    MEMORY_PLUGIN_SOCKET_NAME, MEMORY_RESOURCE_NAME, PLUGIN_SOCKET_NAME, RESOURCE_NAME,
};
use crate::inventory::{Inventory, VirtualDevice};
use crate::preferred::{preferred_allocation, preferred_memory};
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

/// The options this plugin registers with and reports.
pub fn plugin_options() -> DevicePluginOptions {
    DevicePluginOptions {
        pre_start_required: false,
        get_preferred_allocation_available: true,
    }
}

/// One of the extended resources the plugin advertises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    /// `nvshare.com/gpu`: shares of a GPU, which load the hook.
    Shares,
    /// `nvshare.com/gpumem`: units of GPU memory, which set the memory
    /// limit (with `--memory-unit`).
    Memory,
}

impl Resource {
    /// The resource name pods ask for.
    pub fn name(self) -> &'static str {
        match self {
            Resource::Shares => RESOURCE_NAME,
            Resource::Memory => MEMORY_RESOURCE_NAME,
        }
    }

    /// Its socket's file name in the kubelet's device plugin directory.
    pub fn socket_name(self) -> &'static str {
        match self {
            Resource::Shares => PLUGIN_SOCKET_NAME,
            Resource::Memory => MEMORY_PLUGIN_SOCKET_NAME,
        }
    }

    /// The devices of this resource in `inventory`.
    fn devices(self, inventory: &Inventory) -> Vec<VirtualDevice> {
        match self {
            Resource::Shares => inventory.devices(),
            Resource::Memory => inventory.memory_devices(),
        }
    }

    /// The device of this resource with ID `id`, if `inventory` has it.
    fn lookup(self, inventory: &Inventory, id: &str) -> Option<VirtualDevice> {
        match self {
            Resource::Shares => inventory.lookup(id),
            Resource::Memory => inventory.lookup_memory(id),
        }
    }
}

/// The service: reads the published inventory, never scans itself.
#[derive(Clone)]
pub struct DevicePluginService {
    resource: Resource,
    inventory: watch::Receiver<Inventory>,
    settings: Arc<AllocationSettings>,
    /// Turns true when this server generation stops: open ListAndWatch
    /// streams end then, so the server can shut down.
    stop: watch::Receiver<bool>,
}

impl DevicePluginService {
    /// A service of `resource` over `inventory`, allocating with
    /// `settings`, whose streams end when `stop` turns true.
    pub fn new(
        resource: Resource,
        inventory: watch::Receiver<Inventory>,
        settings: Arc<AllocationSettings>,
        stop: watch::Receiver<bool>,
    ) -> Self {
        DevicePluginService {
            resource,
            inventory,
            settings,
            stop,
        }
    }
}

fn list_response(resource: Resource, inventory: &Inventory) -> ListAndWatchResponse {
    let devices = resource
        .devices(inventory)
        .into_iter()
        .map(|d| Device {
            health: d.health().to_owned(),
            id: d.id,
            topology: None,
        })
        .collect();
    ListAndWatchResponse { devices }
}

/// A stream of device lists, one per element.
pub type DeviceListStream =
    Pin<Box<dyn Stream<Item = Result<ListAndWatchResponse, Status>> + Send>>;

#[tonic::async_trait]
impl DevicePlugin for DevicePluginService {
    async fn get_device_plugin_options(
        &self,
        _request: Request<Empty>,
    ) -> Result<Response<DevicePluginOptions>, Status> {
        Ok(Response::new(plugin_options()))
    }

    type ListAndWatchStream = DeviceListStream;

    async fn list_and_watch(
        &self,
        _request: Request<Empty>,
    ) -> Result<Response<Self::ListAndWatchStream>, Status> {
        let (tx, rx) = mpsc::channel(4);
        let mut inventory = self.inventory.clone();
        let mut stop = self.stop.clone();
        let resource = self.resource;
        tokio::spawn(async move {
            loop {
                let list = list_response(resource, &inventory.borrow_and_update());
                tracing::debug!(devices = list.devices.len(), "sending the device list");
                if tx.send(Ok(list)).await.is_err() {
                    return; // the kubelet hung up
                }
                tokio::select! {
                    changed = inventory.changed() => if changed.is_err() { return },
                    () = crate::stop_signal::stopped(&mut stop) => return,
                    () = tx.closed() => return,
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn get_preferred_allocation(
        &self,
        request: Request<PreferredAllocationRequest>,
    ) -> Result<Response<PreferredAllocationResponse>, Status> {
        let pick = match self.resource {
            Resource::Shares => preferred_allocation,
            Resource::Memory => preferred_memory,
        };
        let container_responses = request
            .into_inner()
            .container_requests
            .into_iter()
            .map(|c| {
                let size = usize::try_from(c.allocation_size).map_err(|_| {
                    Status::invalid_argument(format!(
                        "allocation_size must not be negative, got {}",
                        c.allocation_size
                    ))
                })?;
                Ok(ContainerPreferredAllocationResponse {
                    device_i_ds: pick(&c.available_device_i_ds, &c.must_include_device_i_ds, size),
                })
            })
            .collect::<Result<_, Status>>()?;
        Ok(Response::new(PreferredAllocationResponse {
            container_responses,
        }))
    }

    async fn allocate(
        &self,
        request: Request<AllocateRequest>,
    ) -> Result<Response<AllocateResponse>, Status> {
        let request = request.into_inner();
        if self.resource == Resource::Shares {
            self.settings
                .check_ready()
                .map_err(|e| Status::failed_precondition(e.to_string()))?;
        }
        let inventory = self.inventory.borrow().clone();
        let mut container_responses = Vec::with_capacity(request.container_requests.len());
        for container in &request.container_requests {
            let gpus = gpus_for(self.resource, &inventory, &container.devices_ids)?;
            let response = match self.resource {
                Resource::Shares => {
                    tracing::info!(devices = ?container.devices_ids, gpus = ?gpus, "allocating");
                    self.settings.container_response(&gpus)
                }
                Resource::Memory => {
                    let unit = inventory.memory_unit().unwrap_or(0);
                    let bytes = unit.saturating_mul(container.devices_ids.len() as u64);
                    tracing::info!(units = container.devices_ids.len(), bytes, gpus = ?gpus, "allocating memory");
                    memory_response(bytes)
                }
            };
            container_responses.push(response);
        }
        Ok(Response::new(AllocateResponse {
            container_responses,
        }))
    }

    async fn pre_start_container(
        &self,
        _request: Request<PreStartContainerRequest>,
    ) -> Result<Response<PreStartContainerResponse>, Status> {
        Ok(Response::new(PreStartContainerResponse {}))
    }
}

/// The physical GPUs behind `ids` (devices of `resource`), in order, without
/// duplicates; a gRPC error naming the IDs that cannot be given out.
fn gpus_for(
    resource: Resource,
    inventory: &Inventory,
    ids: &[String],
) -> Result<Vec<String>, Status> {
    if ids.is_empty() {
        return Err(Status::invalid_argument(
            "a container request names no devices",
        ));
    }
    let mut unknown = Vec::new();
    let mut unhealthy = Vec::new();
    let mut gpus = Vec::new();
    for id in ids {
        match resource.lookup(inventory, id) {
            None => unknown.push(id.as_str()),
            Some(device) if !device.healthy => unhealthy.push(id.as_str()),
            Some(device) => {
                if !gpus.contains(&device.gpu_uuid) {
                    gpus.push(device.gpu_uuid);
                }
            }
        }
    }
    if !unknown.is_empty() {
        let shape = match resource {
            Resource::Shares => "<GPU uuid>__<share>",
            Resource::Memory => "<GPU uuid>__mem<unit>",
        };
        return Err(Status::invalid_argument(format!(
            "unknown device IDs {unknown:?}: this plugin advertises {} as {shape} IDs from ListAndWatch only",
            resource.name()
        )));
    }
    if !unhealthy.is_empty() {
        return Err(Status::failed_precondition(format!(
            "devices {unhealthy:?} are on a GPU that is no longer found on this node"
        )));
    }
    Ok(gpus)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn shares_of_one_gpu_make_one_visible_gpu() {
        let mut inv = Inventory::new(4);
        inv.observe(&strings(&["GPU-a", "GPU-b"]));
        let gpus = gpus_for(
            Resource::Shares,
            &inv,
            &strings(&["GPU-b__1", "GPU-a__0", "GPU-b__3"]),
        )
        .unwrap();
        assert_eq!(gpus, ["GPU-b", "GPU-a"]);
    }

    #[test]
    fn bad_ids_are_invalid_arguments_and_vanished_gpus_preconditions() {
        let mut inv = Inventory::new(2);
        inv.observe(&strings(&["GPU-a", "GPU-b"]));
        let err =
            gpus_for(Resource::Shares, &inv, &strings(&["GPU-a__0", "GPU-x__0"])).unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(err.message().contains("GPU-x__0"), "{}", err.message());
        assert_eq!(
            gpus_for(Resource::Shares, &inv, &[]).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
        inv.observe(&strings(&["GPU-a"]));
        let err = gpus_for(Resource::Shares, &inv, &strings(&["GPU-b__1"])).unwrap_err();
        assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    }
}
