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
                ClientMsg::Attach {
                    gpu,
                    physical_memory,
                    footprint,
                    resident,
                    holding,
                }
            }),
        (gpu(), any::<u64>(), any::<u64>()).prop_map(|(gpu, footprint, resident)| {
            ClientMsg::Usage {
                gpu,
                footprint,
                resident,
            }
        }),
        gpu().prop_map(|gpu| ClientMsg::RequestLock { gpu }),
        (gpu(), any::<u64>()).prop_map(|(gpu, resident)| ClientMsg::LockReleased { gpu, resident }),
        gpu().prop_map(|gpu| ClientMsg::Idle { gpu }),
        (gpu(), any::<u64>()).prop_map(|(gpu, footprint)| ClientMsg::Reserve { gpu, footprint }),
        (gpu(), any::<u64>(), any::<u64>(), any::<u64>()).prop_map(
            |(gpu, bytes, resident, elapsed_us)| ClientMsg::Evicted {
                gpu,
                bytes,
                resident,
                elapsed_us
            }
        ),
        (gpu(), any::<u64>(), any::<u64>(), any::<u64>()).prop_map(
            |(gpu, bytes, resident, elapsed_us)| ClientMsg::Restored {
                gpu,
                bytes,
                resident,
                elapsed_us
            }
        ),
        (gpu(), any::<u64>(), ".*").prop_map(|(gpu, resident, reason)| {
            ClientMsg::EvictFailed {
                gpu,
                resident,
                reason,
            }
        }),
        (gpu(), any::<u64>()).prop_map(|(gpu, resident)| ClientMsg::Evicting { gpu, resident }),
        (gpu(), any::<u64>(), any::<u64>(), any::<u64>()).prop_map(
            |(gpu, bytes, resident, elapsed_us)| ClientMsg::Fetched {
                gpu,
                bytes,
                resident,
                elapsed_us
            }
        ),
        gpu().prop_map(|gpu| ClientMsg::Detach { gpu }),
        (gpu(), any::<u64>(), any::<u64>()).prop_map(|(gpu, pinned, pageable)| {
            ClientMsg::HostShadows {
                gpu,
                pinned,
                pageable,
            }
        }),
    ]
}

fn scheduler_msg() -> impl Strategy<Value = SchedulerMsg> {
    prop_oneof![
        (any::<u64>(), gpu(), any::<u64>(), any::<u64>()).prop_map(
            |(client_id, gpu, quantum_ms, capacity)| SchedulerMsg::Welcome {
                client_id,
                gpu,
                quantum_ms,
                capacity
            }
        ),
        (gpu(), any::<u64>()).prop_map(|(gpu, room)| SchedulerMsg::LockGranted { gpu, room }),
        (gpu(), any::<u64>()).prop_map(|(gpu, room)| SchedulerMsg::Reserved { gpu, room }),
        (gpu(), any::<u64>())
            .prop_map(|(gpu, evict_bytes)| SchedulerMsg::DropLock { gpu, evict_bytes }),
        (gpu(), any::<u64>()).prop_map(|(gpu, bytes)| SchedulerMsg::Evict { gpu, bytes }),
        (gpu(), any::<u64>()).prop_map(|(gpu, bytes)| SchedulerMsg::Prepare { gpu, bytes }),
        (gpu(), any::<u64>()).prop_map(|(gpu, bytes)| SchedulerMsg::Fetch { gpu, bytes }),
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

/// Messages added after a release are appended to their enums: every
/// message an older peer sends keeps its exact encoding (variant index
/// first, then the fields in order).
#[test]
fn appended_messages_leave_earlier_encodings_unchanged() {
    let gpu = GpuUuid([7; 16]);
    let detach = encode(&ClientMsg::Detach { gpu }).unwrap();
    assert_eq!(detach[0], 9, "Detach is still the tenth client message");
    assert_eq!(&detach[1..], &[7; 16]);
    let shadows = encode(&ClientMsg::HostShadows {
        gpu,
        pinned: 1,
        pageable: 2,
    })
    .unwrap();
    assert!(
        shadows[0] >= 10,
        "HostShadows comes after every earlier one"
    );
    assert_eq!(&shadows[shadows.len() - 2..], &[1, 2]);
    let evicting = encode(&ClientMsg::Evicting { gpu, resident: 3 }).unwrap();
    assert!(evicting[0] > shadows[0], "Evicting comes after HostShadows");
    assert_eq!(encode(&SchedulerMsg::ShuttingDown).unwrap(), vec![8]);
    let fetch = encode(&SchedulerMsg::Fetch { gpu, bytes: 4 }).unwrap();
    assert_eq!(
        fetch[0], 9,
        "Fetch comes after every earlier scheduler message"
    );
    assert_eq!(encode(&ControlRequest::Status).unwrap(), vec![0]);
    assert_eq!(encode(&ControlRequest::HostShadows).unwrap(), vec![3]);
    assert_eq!(encode(&ControlReply::Done).unwrap(), vec![1]);
    assert_eq!(
        encode(&ControlReply::HostShadows(Vec::new())).unwrap(),
        vec![3, 0]
    );
}
