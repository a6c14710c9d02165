//! The `DevicePlugin` gRPC service the kubelet calls on the plugin's socket.

use crate::allocation::AllocationSettings;
use crate::api::device_plugin_server::DevicePlugin;
use crate::api::{
    AllocateRequest, AllocateResponse, ContainerPreferredAllocationResponse, Device,
    DevicePluginOptions, Empty, ListAndWatchResponse, PreStartContainerRequest,
    PreStartContainerResponse, PreferredAllocationRequest, PreferredAllocationResponse,
};
use crate::inventory::Inventory;
use crate::preferred::preferred_allocation;
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

/// The service: reads the published inventory, never scans itself.
#[derive(Clone)]
pub struct DevicePluginService {
    inventory: watch::Receiver<Inventory>,
    settings: Arc<AllocationSettings>,
    /// Turns true when this server generation stops: open ListAndWatch
    /// streams end then, so the server can shut down.
    stop: watch::Receiver<bool>,
}

impl DevicePluginService {
    /// A service over `inventory`, allocating with `settings`, whose streams
    /// end when `stop` turns true.
    pub fn new(
        inventory: watch::Receiver<Inventory>,
        settings: Arc<AllocationSettings>,
        stop: watch::Receiver<bool>,
    ) -> Self {
        DevicePluginService {
            inventory,
            settings,
            stop,
        }
    }
}

fn list_response(inventory: &Inventory) -> ListAndWatchResponse {
    let devices = inventory
        .devices()
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
        tokio::spawn(async move {
            loop {
                let list = list_response(&inventory.borrow_and_update());
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
                    device_i_ds: preferred_allocation(
                        &c.available_device_i_ds,
                        &c.must_include_device_i_ds,
                        size,
                    ),
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
        self.settings
            .check_ready()
            .map_err(|e| Status::failed_precondition(e.to_string()))?;
        let inventory = self.inventory.borrow().clone();
        let mut container_responses = Vec::with_capacity(request.container_requests.len());
        for container in &request.container_requests {
            let gpus = gpus_for(&inventory, &container.devices_ids)?;
            tracing::info!(devices = ?container.devices_ids, gpus = ?gpus, "allocating");
            container_responses.push(self.settings.container_response(&gpus));
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

/// The physical GPUs behind `ids`, in order, without duplicates; a gRPC
/// error naming the IDs that cannot be given out.
fn gpus_for(inventory: &Inventory, ids: &[String]) -> Result<Vec<String>, Status> {
    if ids.is_empty() {
        return Err(Status::invalid_argument(
            "a container request names no devices",
        ));
    }
    let mut unknown = Vec::new();
    let mut unhealthy = Vec::new();
    let mut gpus = Vec::new();
    for id in ids {
        match inventory.lookup(id) {
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
        return Err(Status::invalid_argument(format!(
            "unknown device IDs {unknown:?}: this plugin advertises <GPU uuid>__<share> IDs from ListAndWatch only"
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
        let gpus = gpus_for(&inv, &strings(&["GPU-b__1", "GPU-a__0", "GPU-b__3"])).unwrap();
        assert_eq!(gpus, ["GPU-b", "GPU-a"]);
    }

    #[test]
    fn bad_ids_are_invalid_arguments_and_vanished_gpus_preconditions() {
        let mut inv = Inventory::new(2);
        inv.observe(&strings(&["GPU-a", "GPU-b"]));
        let err = gpus_for(&inv, &strings(&["GPU-a__0", "GPU-x__0"])).unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(err.message().contains("GPU-x__0"), "{}", err.message());
        assert_eq!(
            gpus_for(&inv, &[]).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
        inv.observe(&strings(&["GPU-a"]));
        let err = gpus_for(&inv, &strings(&["GPU-b__1"])).unwrap_err();
        assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    }
}
