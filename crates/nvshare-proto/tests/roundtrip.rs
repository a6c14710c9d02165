//! Property tests: every message survives encode → frame → decode, and no
//! byte string makes the decoders panic.

use nvshare_proto::*;
use proptest::prelude::*;

fn gpu() -> impl Strategy<Value = GpuUuid> {
    any::<[u8; 16]>().prop_map(GpuUuid)
}

fn policy() -> impl Strategy<Value = Policy> {
    prop_oneof![
        Just(Policy::Auto),
        Just(Policy::Exclusive),
        Just(Policy::Off)
    ]
}

fn error_reply() -> impl Strategy<Value = ErrorReply> {
    (
        prop_oneof![
            Just(ErrorCode::BadFrame),
            Just(ErrorCode::BadVersion),
            Just(ErrorCode::Protocol),
            Just(ErrorCode::PermissionDenied),
            Just(ErrorCode::InvalidArgument),
            Just(ErrorCode::Internal),
        ],
        ".*",
    )
        .prop_map(|(code, message)| ErrorReply { code, message })
}

fn hello() -> impl Strategy<Value = Hello> {
    prop_oneof![
        (".*", proptest::option::of(".*"))
            .prop_map(|(name, group)| Hello::new(Role::Client { name, group })),
        Just(Hello::new(Role::Control)),
    ]
}

fn hello_reply() -> impl Strategy<Value = HelloReply> {
    prop_oneof![
        (any::<u64>(), any::<u32>())
            .prop_map(|(client_id, version)| HelloReply::Accepted { client_id, version }),
        error_reply().prop_map(HelloReply::Rejected),
    ]
}

fn client_msg() -> impl Strategy<Value = ClientMsg> {
    prop_oneof![
        (
            gpu(),
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            any::<bool>()
        )
            .prop_map(|(gpu, physical_memory, footprint, resident, holding)| {
                ClientBody::Attach {
                    physical_memory,
                    footprint,
                    resident,
                    holding,
                }
                .on(gpu)
            }),
        (gpu(), any::<u64>(), any::<u64>()).prop_map(|(gpu, footprint, resident)| {
            ClientBody::Usage {
                footprint,
                resident,
            }
            .on(gpu)
        }),
        gpu().prop_map(|gpu| ClientMsg {
            gpu,
            body: ClientBody::RequestLock
        }),
        (gpu(), any::<u64>()).prop_map(|(gpu, resident)| ClientMsg {
            gpu,
            body: ClientBody::LockReleased { resident }
        }),
        gpu().prop_map(|gpu| ClientMsg {
            gpu,
            body: ClientBody::Idle
        }),
        (gpu(), any::<u64>()).prop_map(|(gpu, footprint)| ClientMsg {
            gpu,
            body: ClientBody::Reserve { footprint }
        }),
        (gpu(), any::<u64>(), any::<u64>(), any::<u64>()).prop_map(
            |(gpu, bytes, resident, elapsed_us)| ClientMsg {
                gpu,
                body: ClientBody::Evicted {
                    bytes,
                    resident,
                    elapsed_us
                }
            }
        ),
        (gpu(), any::<u64>(), any::<u64>(), any::<u64>()).prop_map(
            |(gpu, bytes, resident, elapsed_us)| ClientMsg {
                gpu,
                body: ClientBody::Restored {
                    bytes,
                    resident,
                    elapsed_us
                }
            }
        ),
        (gpu(), any::<u64>(), ".*").prop_map(|(gpu, resident, reason)| {
            ClientBody::EvictFailed { resident, reason }.on(gpu)
        }),
        (gpu(), any::<u64>()).prop_map(|(gpu, resident)| ClientMsg {
            gpu,
            body: ClientBody::Evicting { resident }
        }),
        (gpu(), any::<u64>(), any::<u64>(), any::<u64>()).prop_map(
            |(gpu, bytes, resident, elapsed_us)| ClientMsg {
                gpu,
                body: ClientBody::Fetched {
                    bytes,
                    resident,
                    elapsed_us
                }
            }
        ),
        gpu().prop_map(|gpu| ClientMsg {
            gpu,
            body: ClientBody::Detach
        }),
        (gpu(), any::<u64>(), any::<u64>()).prop_map(|(gpu, pinned, pageable)| {
            ClientBody::HostShadows { pinned, pageable }.on(gpu)
        }),
    ]
}

fn scheduler_msg() -> impl Strategy<Value = SchedulerMsg> {
    prop_oneof![
        (any::<u64>(), gpu(), any::<u64>(), any::<u64>()).prop_map(
            |(client_id, gpu, quantum_ms, capacity)| SchedulerMsg::Gpu {
                gpu,
                body: SchedulerBody::Welcome {
                    client_id,
                    quantum_ms,
                    capacity
                }
            }
        ),
        (gpu(), any::<u64>()).prop_map(|(gpu, room)| SchedulerMsg::Gpu {
            gpu,
            body: SchedulerBody::LockGranted { room }
        }),
        (gpu(), any::<u64>()).prop_map(|(gpu, room)| SchedulerMsg::Gpu {
            gpu,
            body: SchedulerBody::Reserved { room }
        }),
        (gpu(), any::<u64>()).prop_map(|(gpu, evict_bytes)| SchedulerMsg::Gpu {
            gpu,
            body: SchedulerBody::DropLock { evict_bytes }
        }),
        (gpu(), any::<u64>()).prop_map(|(gpu, bytes)| SchedulerMsg::Gpu {
            gpu,
            body: SchedulerBody::Evict { bytes }
        }),
        (gpu(), any::<u64>()).prop_map(|(gpu, bytes)| SchedulerMsg::Gpu {
            gpu,
            body: SchedulerBody::Prepare { bytes }
        }),
        (gpu(), any::<u64>()).prop_map(|(gpu, bytes)| SchedulerMsg::Gpu {
            gpu,
            body: SchedulerBody::Fetch { bytes }
        }),
        any::<u64>().prop_map(|quantum_ms| SchedulerMsg::QuantumChanged { quantum_ms }),
        error_reply().prop_map(SchedulerMsg::Error),
        Just(SchedulerMsg::ShuttingDown),
    ]
}

fn client_status() -> impl Strategy<Value = ClientStatus> {
    (
        any::<u64>(),
        any::<u32>(),
        ".*",
        prop_oneof![
            Just(ClientState::Running),
            Just(ClientState::Waiting),
            Just(ClientState::Idle),
            Just(ClientState::Releasing)
        ],
        any::<[u64; 4]>(),
    )
        .prop_map(|(client_id, pid, name, state, n)| ClientStatus {
            client_id,
            pid,
            name,
            state,
            footprint: n[0],
            resident: n[1],
            held_ms: n[2],
            grants: n[3],
        })
}

fn gpu_status() -> impl Strategy<Value = GpuStatus> {
    (
        gpu(),
        policy(),
        any::<[u64; 9]>(),
        prop::collection::vec(client_status(), 0..5),
    )
        .prop_map(|(uuid, policy, n, clients)| GpuStatus {
            uuid,
            physical_memory: n[0],
            capacity: n[1],
            policy,
            quantum_ms: n[2],
            resident: n[3],
            grants: n[4],
            switches: n[5],
            bytes_evicted: n[6],
            bytes_restored: n[7],
            swap_time_us: n[8],
            clients,
        })
}

fn gpu_host_shadows() -> impl Strategy<Value = GpuHostShadows> {
    (
        gpu(),
        any::<[u64; 2]>(),
        prop::collection::vec(any::<[u64; 3]>(), 0..5),
    )
        .prop_map(|(uuid, n, clients)| GpuHostShadows {
            uuid,
            pinned: n[0],
            pageable: n[1],
            clients: clients
                .into_iter()
                .map(|c| ClientHostShadows {
                    client_id: c[0],
                    pinned: c[1],
                    pageable: c[2],
                })
                .collect(),
        })
}

fn control_request() -> impl Strategy<Value = ControlRequest> {
    prop_oneof![
        Just(ControlRequest::Status),
        any::<u64>().prop_map(|quantum_ms| ControlRequest::SetQuantum { quantum_ms }),
        policy().prop_map(|policy| ControlRequest::SetPolicy { policy }),
        Just(ControlRequest::HostShadows),
    ]
}

fn control_reply() -> impl Strategy<Value = ControlReply> {
    prop_oneof![
        (
            any::<u32>(),
            ".*",
            any::<u64>(),
            prop::collection::vec(gpu_status(), 0..3)
        )
            .prop_map(|(scheduler_pid, scheduler_version, uptime_s, gpus)| {
                ControlReply::Status(StatusReport {
                    scheduler_pid,
                    scheduler_version,
                    uptime_s,
                    gpus,
                })
            }),
        Just(ControlReply::Done),
        error_reply().prop_map(ControlReply::Error),
        prop::collection::vec(gpu_host_shadows(), 0..3).prop_map(ControlReply::HostShadows),
    ]
}

fn round_trip<T>(msg: &T) -> T
where
    T: serde::Serialize + serde::de::DeserializeOwned,
{
    let mut wire = Vec::new();
    write_msg(&mut wire, msg).unwrap();
    let mut buffer = FrameBuffer::new();
    buffer.extend(&wire);
    let payload = buffer.next_payload().unwrap().unwrap().to_vec();
    let from_buffer: T = decode(&payload).unwrap();
    let from_stream: T = read_msg(&mut wire.as_slice()).unwrap();
    assert_eq!(encode(&from_buffer).unwrap(), encode(&from_stream).unwrap());
    from_stream
}

proptest! {
    #[test]
    fn hello_round_trips(msg in hello()) {
        let back = round_trip(&msg);
        prop_assert_eq!(&back, &msg);
        prop_assert_eq!(decode_hello(&encode(&msg).unwrap()).unwrap(), msg);
    }

    #[test]
    fn hello_reply_round_trips(msg in hello_reply()) {
        prop_assert_eq!(round_trip(&msg), msg);
    }

    #[test]
    fn client_msg_round_trips(msg in client_msg()) {
        prop_assert_eq!(round_trip(&msg), msg);
    }

    #[test]
    fn scheduler_msg_round_trips(msg in scheduler_msg()) {
        prop_assert_eq!(round_trip(&msg), msg);
    }

    #[test]
    fn control_request_round_trips(msg in control_request()) {
        prop_assert_eq!(round_trip(&msg), msg);
    }

    #[test]
    fn control_reply_round_trips(msg in control_reply()) {
        prop_assert_eq!(round_trip(&msg), msg);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode_hello(&bytes);
        let _ = decode::<ClientMsg>(&bytes);
        let _ = decode::<SchedulerMsg>(&bytes);
        let _ = decode::<ControlRequest>(&bytes);
        let _ = decode::<ControlReply>(&bytes);
        let mut buffer = FrameBuffer::new();
        buffer.extend(&bytes);
        while let Ok(Some(_)) = buffer.next_payload() {}
        let _ = read_payload_any(&bytes);
    }
}

fn read_payload_any(bytes: &[u8]) -> Result<ClientMsg, ProtoError> {
    read_msg(&mut { bytes })
}

/// The wire layout of protocol 4, which later messages keep (they are
/// appended to their enums): a client message is the GPU's 16 bytes, then
/// the body's variant index and fields; a scheduler message is the
/// envelope's index (0: about a GPU), then the GPU and the body.
#[test]
fn the_envelope_names_the_gpu_once_and_earlier_encodings_stay() {
    let gpu = GpuUuid([7; 16]);
    let detach = encode(&ClientBody::Detach.on(gpu)).unwrap();
    assert_eq!(&detach[..16], &[7; 16], "the GPU comes first, once");
    assert_eq!(&detach[16..], &[9], "Detach is the tenth client body");
    let shadows = encode(
        &ClientBody::HostShadows {
            pinned: 1,
            pageable: 2,
        }
        .on(gpu),
    )
    .unwrap();
    assert_eq!(&shadows[16..], &[10, 1, 2]);
    let fetched = encode(
        &ClientBody::Fetched {
            bytes: 1,
            resident: 2,
            elapsed_us: 3,
        }
        .on(gpu),
    )
    .unwrap();
    assert_eq!(
        &fetched[16..],
        &[12, 1, 2, 3],
        "Fetched is the last client body"
    );
    let fetch = encode(&SchedulerBody::Fetch { bytes: 4 }.on(gpu)).unwrap();
    assert_eq!(
        fetch[0], 0,
        "a GPU's message is the first scheduler message"
    );
    assert_eq!(&fetch[1..17], &[7; 16]);
    assert_eq!(&fetch[17..], &[6, 4], "Fetch is the last scheduler body");
    assert_eq!(encode(&SchedulerMsg::ShuttingDown).unwrap(), vec![3]);
    assert_eq!(encode(&ControlRequest::Status).unwrap(), vec![0]);
    assert_eq!(encode(&ControlRequest::HostShadows).unwrap(), vec![3]);
    assert_eq!(encode(&ControlReply::Done).unwrap(), vec![1]);
    assert_eq!(
        encode(&ControlReply::HostShadows(Vec::new())).unwrap(),
        vec![3, 0]
    );
}
