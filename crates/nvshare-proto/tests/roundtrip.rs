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
        (gpu(), any::<Option<u64>>(), any::<i32>(), any::<u32>()).prop_map(
            |(gpu, memory_limit, priority, weight)| ClientBody::JobSettings(JobSettings {
                memory_limit,
                priority,
                weight
            })
            .on(gpu)
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
        any::<[u64; 5]>(),
        (any::<Option<u64>>(), any::<i32>(), any::<u32>()),
    )
        .prop_map(
            |(client_id, pid, name, state, n, memory_limit)| ClientStatus {
                client_id,
                pid,
                name,
                state,
                footprint: n[0],
                resident: n[1],
                held_ms: n[2],
                grants: n[3],
                memory_limit: memory_limit.0,
                priority: memory_limit.1,
                weight: memory_limit.2,
                waiting_ms: n[4],
            },
        )
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
        Just(ControlRequest::Waits),
    ]
}

fn wait_reason() -> impl Strategy<Value = WaitReason> {
    prop_oneof![
        (any::<u64>(), any::<u64>()).prop_map(|(holder, remaining_ms)| WaitReason::Quantum {
            holder,
            remaining_ms
        }),
        (any::<u64>(), any::<u64>(), any::<u64>()).prop_map(|(holder, draining_ms, timeout_ms)| {
            WaitReason::Drain {
                holder,
                draining_ms,
                timeout_ms,
            }
        }),
        (any::<u64>(), any::<u64>()).prop_map(|(holder, draining_ms)| {
            WaitReason::DrainWithoutRoom {
                holder,
                draining_ms,
            }
        }),
        any::<u64>().prop_map(|short_bytes| WaitReason::Memory { short_bytes }),
        any::<u64>().prop_map(|holder| WaitReason::HolderGrowth { holder }),
        Just(WaitReason::Gang),
        any::<u64>().prop_map(|remaining_ms| WaitReason::Recovery { remaining_ms }),
        (any::<u64>(), any::<u64>()).prop_map(|(holder, remaining_ms)| WaitReason::Priority {
            holder,
            remaining_ms
        }),
    ]
}

fn gpu_wait() -> impl Strategy<Value = GpuWait> {
    (any::<[u8; 16]>(), any::<u64>(), wait_reason()).prop_map(|(uuid, next, reason)| GpuWait {
        uuid: GpuUuid(uuid),
        next,
        reason,
    })
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
        prop::collection::vec(gpu_wait(), 0..3).prop_map(ControlReply::Waits),
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

/// What a peer's bytes come to on the scheduler's read path before and
/// after hello (as `fuzz/fuzz_targets/decode.rs` drives it): the hello, the
/// messages after it, and the most bytes ever buffered before it.
struct PeerRead {
    hello: Option<Hello>,
    messages: Vec<ClientMsg>,
    most_buffered_before_hello: usize,
}

fn read_as_peer(bytes: &[u8], piece: usize) -> PeerRead {
    let mut frames = FrameBuffer::with_limit(MAX_HELLO_LEN);
    let mut read = PeerRead {
        hello: None,
        messages: Vec::new(),
        most_buffered_before_hello: 0,
    };
    let mut rest = bytes;
    loop {
        let room = frames.capacity().saturating_sub(frames.pending());
        let take = room.min(piece).min(rest.len());
        frames.extend(&rest[..take]);
        rest = &rest[take..];
        if read.hello.is_none() {
            read.most_buffered_before_hello = read.most_buffered_before_hello.max(frames.pending());
        }
        while let Ok(Some(payload)) = frames.next_payload() {
            if read.hello.is_none() {
                match decode_hello(payload) {
                    Ok(hello) => read.hello = Some(hello),
                    Err(_) => return read,
                }
                frames.set_limit(MAX_REQUEST_LEN);
            } else if let Ok(msg) = decode::<ClientMsg>(payload) {
                read.messages.push(msg);
            }
        }
        if take == 0 {
            return read;
        }
    }
}

proptest! {
    #[test]
    fn before_hello_no_more_than_one_hello_frame_is_buffered(
        bytes in prop::collection::vec(any::<u8>(), 0..4096),
        piece in 1usize..700,
    ) {
        let read = read_as_peer(&bytes, piece);
        prop_assert!(read.most_buffered_before_hello <= HEADER_LEN + MAX_HELLO_LEN);
    }

    #[test]
    fn a_hello_and_messages_arrive_whole_in_any_pieces(
        hello in hello(),
        msgs in prop::collection::vec(client_msg(), 0..4),
        piece in 1usize..300,
    ) {
        let mut wire = encode_frame(&hello).unwrap();
        for msg in &msgs {
            wire.extend(encode_frame(msg).unwrap());
        }
        let read = read_as_peer(&wire, piece);
        prop_assert_eq!(read.hello, Some(hello));
        prop_assert_eq!(read.messages, msgs);
    }
}

#[test]
fn a_first_frame_announcing_more_than_a_hello_is_refused_before_its_payload() {
    let mut frames = FrameBuffer::with_limit(MAX_HELLO_LEN);
    frames.extend(&((MAX_HELLO_LEN as u32 + 1).to_le_bytes()));
    assert!(matches!(
        frames.next_payload(),
        Err(ProtoError::Oversized { max, .. }) if max == MAX_HELLO_LEN
    ));
    let read = read_as_peer(&[0xff; 10_000], 4096);
    assert!(read.hello.is_none());
    assert!(read.most_buffered_before_hello <= HEADER_LEN + MAX_HELLO_LEN);
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
    assert_eq!(&fetched[16..], &[12, 1, 2, 3]);
    let settings = encode(
        &ClientBody::JobSettings(JobSettings {
            memory_limit: Some(5),
            priority: -1,
            weight: 2,
        })
        .on(gpu),
    )
    .unwrap();
    assert_eq!(
        &settings[16..],
        &[13, 1, 5, 1, 2],
        "JobSettings is the last client body (priority zigzag-encoded)"
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
    assert_eq!(encode(&ControlRequest::Waits).unwrap(), vec![4]);
    assert_eq!(encode(&ControlReply::Done).unwrap(), vec![1]);
    assert_eq!(
        encode(&ControlReply::HostShadows(Vec::new())).unwrap(),
        vec![3, 0]
    );
    assert_eq!(
        encode(&ControlReply::Waits(Vec::new())).unwrap(),
        vec![4, 0],
        "Waits is appended: every earlier control message keeps its encoding"
    );
}
