//! Every message nvshare peers exchange.
//!
//! Sizes are bytes, durations milliseconds or microseconds as the field name
//! says. "Footprint" is every byte a client has allocated on a GPU (what it
//! needs resident to run); "resident" is the part of it on the GPU right now.
//! `footprint - resident` is swapped out to host memory.

use crate::gpu::{GpuSelector, GpuUuid};
use serde::{Deserialize, Serialize};

/// A client id, unique for the lifetime of one scheduler process.
pub type ClientId = u64;

/// First frame of every connection, sent by the connecting side.
///
/// `magic` and `version` come first and keep their encoding in every
/// protocol version, so a mismatch is reported as such rather than as garbage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Always [`crate::MAGIC`].
    pub magic: [u8; 4],
    /// The sender's [`crate::PROTOCOL_VERSION`].
    pub version: u32,
    /// What the connection is for.
    pub role: Role,
}

impl Hello {
    /// A hello of this build's version.
    pub fn new(role: Role) -> Self {
        Hello {
            magic: crate::MAGIC,
            version: crate::PROTOCOL_VERSION,
            role,
        }
    }
}

/// The two kinds of peers of the scheduler.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    /// A program running under `libnvshare.so`.
    Client {
        /// The job name: `NVSHARE_NAME`, else the program's name.
        name: String,
        /// The multi-process job it belongs to, if any (`NVSHARE_GROUP`, or
        /// derived from torch.distributed's environment): the scheduler
        /// grants the members of a group that wait together at the same
        /// time, so that their collectives do not wait for a swapped-out peer.
        group: Option<String>,
    },
    /// An operator tool (`nvshare-ctl`).
    Control,
}

/// The scheduler's answer to [`Hello`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HelloReply {
    /// The connection is accepted. For clients, `client_id` names it in logs
    /// and status; control connections get an id too.
    Accepted {
        /// The id the scheduler gave this connection.
        client_id: ClientId,
        /// The scheduler's protocol version.
        version: u32,
    },
    /// The connection is refused (version mismatch, bad magic); the scheduler
    /// closes it after this frame.
    Rejected(ErrorReply),
}

/// A message from a hooked program to the scheduler: every one is about one
/// GPU, named once in the envelope so that each side finds the GPU's state
/// once and hands the body to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientMsg {
    /// The GPU the message is about.
    pub gpu: GpuUuid,
    /// What it says.
    pub body: ClientBody,
}

/// What a hooked program tells the scheduler about one GPU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientBody {
    /// The program started using a GPU. Answered by [`SchedulerBody::Welcome`].
    /// Sent once per GPU, before any other message naming that GPU.
    Attach {
        /// Its physical memory (`cuDeviceTotalMem`).
        physical_memory: u64,
        /// Bytes already allocated on it (non-zero after a reconnect).
        footprint: u64,
        /// Bytes of that on the GPU now.
        resident: u64,
        /// True if the program holds work on the GPU right now (a reconnect
        /// in the middle of a grant): the scheduler grants it again first.
        holding: bool,
    },
    /// The program's memory on `gpu` changed (allocation, free, swap).
    Usage {
        /// All bytes allocated.
        footprint: u64,
        /// Bytes on the GPU now.
        resident: u64,
    },
    /// The program wants to submit work to `gpu`. Answered by
    /// [`SchedulerBody::LockGranted`] when it may. Sent by the holder after an
    /// [`ClientBody::Idle`] report, it means "busy again": the scheduler
    /// forgets the idle hint and confirms the grant.
    RequestLock,
    /// The lock holder is about to allocate past the room it was given
    /// ([`SchedulerBody::LockGranted`], [`SchedulerBody::Reserved`]): it asks
    /// for room for a footprint of `footprint` bytes and makes the
    /// allocation only once [`SchedulerBody::Reserved`] grants it. If the
    /// scheduler cannot make room beside the other holders it may drop the
    /// lock instead ([`SchedulerBody::DropLock`]); the program then asks for
    /// the lock again with the new footprint. Ignored from a program that
    /// does not hold the lock.
    Reserve {
        /// The footprint the program will have after the allocation.
        footprint: u64,
    },
    /// The program stopped using the lock on `gpu`: in answer to
    /// [`SchedulerBody::DropLock`] (after evicting what was asked), or of its
    /// own accord.
    LockReleased {
        /// Bytes on the GPU after any eviction.
        resident: u64,
    },
    /// The lock holder has submitted no GPU work for a while. It keeps the
    /// lock; the scheduler may ask for it back early if others wait.
    Idle,
    /// Memory was moved to host memory, in answer to
    /// [`SchedulerBody::Evict`] or [`SchedulerBody::DropLock`].
    Evicted {
        /// Bytes moved out.
        bytes: u64,
        /// Bytes still on the GPU.
        resident: u64,
        /// How long it took, in microseconds.
        elapsed_us: u64,
    },
    /// Memory was moved back to the GPU before the program's work ran.
    Restored {
        /// Bytes moved in.
        bytes: u64,
        /// Bytes on the GPU now.
        resident: u64,
        /// How long it took, in microseconds.
        elapsed_us: u64,
    },
    /// An eviction could not be done (host memory exhausted). Nothing was
    /// lost: the memory stays on the GPU.
    EvictFailed {
        /// Bytes still on the GPU.
        resident: u64,
        /// What went wrong, for the operator.
        reason: String,
    },
    /// The program stopped using `gpu` (context destroyed). Its memory there
    /// is gone and any lock is released.
    Detach,
    /// The host memory the program keeps for its memory of `gpu`: the
    /// shadows that hold swapped-out memory (and those made ahead of an
    /// eviction, or kept from the last one). Sent when it changes.
    HostShadows {
        /// Bytes of page-locked shadows.
        pinned: u64,
        /// Bytes of pageable shadows (the driver refused to pin them).
        pageable: u64,
    },
    /// Progress of an eviction asked by [`SchedulerBody::DropLock`] or
    /// [`SchedulerBody::Evict`]: part of the memory is already freed (sent as
    /// each piece is released; the final answer follows as usual). Lets the
    /// scheduler hand the freed memory to the next program's restore
    /// ([`SchedulerBody::Fetch`]) while the rest is still being copied.
    Evicting {
        /// Bytes still on the GPU.
        resident: u64,
    },
    /// Answer to [`SchedulerBody::Fetch`]: memory brought back ahead of a
    /// grant (0 bytes if none could be: the GPU was full, or nothing
    /// swapped out fitted the room).
    Fetched {
        /// Bytes moved in.
        bytes: u64,
        /// Bytes on the GPU now.
        resident: u64,
        /// How long it took, in microseconds.
        elapsed_us: u64,
    },
    /// The job's own settings for `gpu`: sent after [`ClientBody::Attach`]
    /// by a program whose settings are not the defaults.
    JobSettings(JobSettings),
}

/// What a job asks of the scheduler for itself (the hook's environment).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSettings {
    /// The most it may hold on the GPU (`NVSHARE_MEMORY_LIMIT`): the hook
    /// enforces it, the scheduler shows it.
    pub memory_limit: Option<u64>,
    /// `NVSHARE_PRIORITY`: higher goes first ([`DEFAULT_PRIORITY`] by
    /// default; see the scheduler's `policy::gang` for how far).
    pub priority: i32,
    /// `NVSHARE_WEIGHT`: its time slice is this many quanta, so jobs of one
    /// priority share a GPU's time in proportion ([`DEFAULT_WEIGHT`] by
    /// default; 1 to [`MAX_WEIGHT`]).
    pub weight: u32,
}

/// A job's priority when it gives none.
pub const DEFAULT_PRIORITY: i32 = 0;
/// A job's weight when it gives none.
pub const DEFAULT_WEIGHT: u32 = 1;
/// The largest weight (a time slice of 100 quanta).
pub const MAX_WEIGHT: u32 = 100;
/// The priorities a job may have: `-MAX_PRIORITY..=MAX_PRIORITY`.
pub const MAX_PRIORITY: i32 = 1000;

impl Default for JobSettings {
    fn default() -> Self {
        JobSettings {
            memory_limit: None,
            priority: DEFAULT_PRIORITY,
            weight: DEFAULT_WEIGHT,
        }
    }
}

/// A message from the scheduler to a hooked program: about one GPU (in an
/// envelope naming it once), or about the whole connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SchedulerMsg {
    /// About one GPU.
    Gpu {
        /// The GPU.
        gpu: GpuUuid,
        /// What the scheduler says about it.
        body: SchedulerBody,
    },
    /// The quantum changed (operator `set-tq`).
    QuantumChanged {
        /// The new quantum in milliseconds.
        quantum_ms: u64,
    },
    /// The last message was refused. Fatal codes are followed by a close.
    Error(ErrorReply),
    /// The scheduler is exiting; the program continues unscheduled until it
    /// can reconnect.
    ShuttingDown,
}

/// What the scheduler tells a hooked program about one GPU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SchedulerBody {
    /// Answer to [`ClientBody::Attach`].
    Welcome {
        /// The client's id.
        client_id: ClientId,
        /// The time-slice quantum in milliseconds.
        quantum_ms: u64,
        /// The memory the program may use on this GPU: the GPU's memory minus
        /// a reserve, or the operator's `--memory-capacity`. Programs see it as
        /// the GPU's total memory.
        capacity: u64,
    },
    /// The program may submit work to `gpu`, and allocate on it up to a
    /// footprint of `room` bytes without asking ([`ClientBody::Reserve`]).
    LockGranted {
        /// The footprint the holder may reach: memory the scheduler keeps
        /// free for it beside the other holders.
        room: u64,
    },
    /// Answer to [`ClientBody::Reserve`]: the holder may now allocate up to a
    /// footprint of `room` bytes (at least what it asked) while it holds the
    /// lock.
    Reserved {
        /// The footprint the holder may reach.
        room: u64,
    },
    /// Stop submitting work to `gpu`, wait for the work in flight, evict
    /// `evict_bytes` (least recently used first; 0: keep everything) and
    /// answer [`ClientBody::LockReleased`].
    DropLock {
        /// Bytes to move to host memory before releasing.
        evict_bytes: u64,
    },
    /// A hint to a holder: others wait for `gpu`, and when its quantum ends
    /// it will be asked to move about `bytes` to host memory. Making the
    /// host room for that now, while it runs, takes it off the switch. No
    /// answer.
    Prepare {
        /// Bytes it will likely have to move out.
        bytes: u64,
    },
    /// The program does not hold the lock; move `bytes` of its memory on
    /// `gpu` to host memory and answer [`ClientBody::Evicted`].
    Evict {
        /// Bytes to move out.
        bytes: u64,
    },
    /// The program waits for `gpu` and is likely next: bring up to `bytes`
    /// of its swapped-out memory back now, into memory that is free (the
    /// switch's eviction and this restore then use the two directions of
    /// the link at once), and answer [`ClientBody::Fetched`]. Its work still
    /// waits for [`SchedulerBody::LockGranted`].
    Fetch {
        /// The most bytes to bring back.
        bytes: u64,
    },
}

impl ClientBody {
    /// This body in an envelope about `gpu`.
    pub fn on(self, gpu: GpuUuid) -> ClientMsg {
        ClientMsg { gpu, body: self }
    }
}

impl SchedulerBody {
    /// This body in an envelope about `gpu`.
    pub fn on(self, gpu: GpuUuid) -> SchedulerMsg {
        SchedulerMsg::Gpu { gpu, body: self }
    }
}

/// Requests of an operator tool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControlRequest {
    /// The state of every GPU and client.
    Status,
    /// Set the time-slice quantum (privileged).
    SetQuantum {
        /// The new quantum in milliseconds; at least 1.
        quantum_ms: u64,
    },
    /// Set the scheduling policy of every GPU (privileged).
    SetPolicy {
        /// The new policy.
        policy: Policy,
    },
    /// The host memory each client keeps for its swapped-out GPU memory,
    /// answered by [`ControlReply::HostShadows`]. A request of its own
    /// (rather than fields of [`StatusReport`]) so that every earlier
    /// message keeps its encoding.
    HostShadows,
    /// Why the next program on each GPU is not running yet, answered by
    /// [`ControlReply::Waits`] (a request of its own, as `HostShadows`).
    Waits,
    /// Set the quantum of one GPU (privileged); other GPUs keep theirs, and
    /// a later [`ControlRequest::SetQuantum`] sets every GPU's again.
    SetGpuQuantum {
        /// The GPU.
        gpu: GpuSelector,
        /// The new quantum in milliseconds; at least 1.
        quantum_ms: u64,
    },
    /// Set the policy of one GPU (privileged), as `SetGpuQuantum`.
    SetGpuPolicy {
        /// The GPU.
        gpu: GpuSelector,
        /// The new policy.
        policy: Policy,
    },
    /// The GPUs the scheduler found at start (NVML) and their health,
    /// answered by [`ControlReply::Inventory`].
    Inventory,
}

/// The scheduler's answer to one [`ControlRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControlReply {
    /// Answer to [`ControlRequest::Status`].
    Status(StatusReport),
    /// The setting was changed.
    Done,
    /// The request was refused.
    Error(ErrorReply),
    /// Answer to [`ControlRequest::HostShadows`]: one entry per GPU, in
    /// UUID order.
    HostShadows(Vec<GpuHostShadows>),
    /// Answer to [`ControlRequest::Waits`]: one entry per GPU somebody
    /// waits for, in UUID order.
    Waits(Vec<GpuWait>),
    /// Answer to [`ControlRequest::Inventory`].
    Inventory(Inventory),
}

/// The GPUs the scheduler knows of itself (rather than from programs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Inventory {
    /// Why no GPUs were found, if none were (e.g. no NVML on this machine).
    pub unavailable: Option<String>,
    /// Every GPU found, in index order.
    pub gpus: Vec<GpuInfo>,
}

impl Inventory {
    /// The GPU with `uuid`, if it was found at start.
    pub fn gpu(&self, uuid: &GpuUuid) -> Option<&GpuInfo> {
        self.gpus.iter().find(|g| g.uuid == *uuid)
    }
}

/// One GPU found at start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuInfo {
    /// NVML's index (as `nvidia-smi` numbers it).
    pub index: u32,
    /// The UUID.
    pub uuid: GpuUuid,
    /// The product name.
    pub name: String,
    /// Total memory in bytes.
    pub memory: u64,
    /// Critical XID events the driver reported since the scheduler started.
    pub xids: u64,
    /// The code of the last one.
    pub last_xid: Option<u64>,
}

/// The program next in line for a GPU, and what it waits for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuWait {
    /// The GPU.
    pub uuid: GpuUuid,
    /// The client at the head of its queue.
    pub next: ClientId,
    /// Why it does not run yet.
    pub reason: WaitReason,
}

/// Why the head of a GPU's queue does not run yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WaitReason {
    /// A holder's time slice has not ended (the latest of those in the
    /// way: they give the GPU back together).
    Quantum {
        /// The holder whose quantum ends last.
        holder: ClientId,
        /// Milliseconds until it ends.
        remaining_ms: u64,
    },
    /// A holder was asked to give the GPU back and is finishing the GPU
    /// work it had queued (and moving memory out).
    Drain {
        /// The holder.
        holder: ClientId,
        /// Milliseconds since it was asked.
        draining_ms: u64,
        /// The drain timeout, after which the next program runs beside it
        /// where the GPU physically has room.
        timeout_ms: u64,
    },
    /// A holder's drain outlasted the drain timeout, and the GPU has no
    /// physical room to run the next program beside it: the switch waits
    /// until the holder's queued work ends.
    DrainWithoutRoom {
        /// The holder.
        holder: ClientId,
        /// Milliseconds since it was asked.
        draining_ms: u64,
    },
    /// Other programs are moving memory out to make room for it.
    Memory {
        /// Bytes still missing.
        short_bytes: u64,
    },
    /// A holder that grows goes first.
    HolderGrowth {
        /// The holder.
        holder: ClientId,
    },
    /// It runs with its gang (the other ranks of its job, or its own other
    /// GPUs), which are not all at the head of their queues yet.
    Gang,
    /// The scheduler restarted: no GPU is granted until the programs that
    /// held one had time to say so.
    Recovery {
        /// Milliseconds until grants resume.
        remaining_ms: u64,
    },
    /// A holder of a higher priority keeps the GPU past its time slice
    /// until the waiting program has waited long enough.
    Priority {
        /// The holder.
        holder: ClientId,
        /// Milliseconds until it gives way.
        remaining_ms: u64,
    },
}

/// The host memory clients keep for their memory of one GPU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct GpuHostShadows {
    /// The GPU.
    pub uuid: GpuUuid,
    /// Page-locked shadow bytes of every client together.
    pub pinned: u64,
    /// Pageable shadow bytes of every client together.
    pub pageable: u64,
    /// Each client's share, by id (clients that reported none included).
    pub clients: Vec<ClientHostShadows>,
}

/// The host memory one client keeps for its memory of one GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ClientHostShadows {
    /// The client's id.
    pub client_id: ClientId,
    /// Page-locked shadow bytes.
    pub pinned: u64,
    /// Pageable shadow bytes.
    pub pageable: u64,
}

/// How the scheduler shares a GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum Policy {
    /// Clients whose memory fits together run together; otherwise the GPU is
    /// time-sliced and memory swapped.
    #[default]
    Auto,
    /// One lock holder per GPU at any time (the original nvshare).
    Exclusive,
    /// Every request is granted at once; no time-slicing.
    Off,
}

impl Policy {
    /// The policy's name as the CLI spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Auto => "auto",
            Policy::Exclusive => "exclusive",
            Policy::Off => "off",
        }
    }
}

impl std::fmt::Display for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Policy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Policy::Auto),
            "exclusive" => Ok(Policy::Exclusive),
            "off" => Ok(Policy::Off),
            other => Err(format!(
                "unknown policy {other:?}: expected auto, exclusive or off"
            )),
        }
    }
}

/// A refusal, with a code for programs and a message for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReply {
    /// What kind of refusal.
    pub code: ErrorCode,
    /// What happened and what to do, for a person.
    pub message: String,
}

/// Kinds of refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorCode {
    /// The frame could not be decoded; the connection is closed.
    BadFrame,
    /// Protocol version or magic mismatch; the connection is closed.
    BadVersion,
    /// The message is not valid here (wrong role, unknown GPU, ...).
    Protocol,
    /// The peer may not do this (unprivileged settings change).
    PermissionDenied,
    /// A value is out of range.
    InvalidArgument,
    /// The scheduler failed internally.
    Internal,
}

/// Answer to [`ControlRequest::Status`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    /// The scheduler's pid.
    pub scheduler_pid: u32,
    /// The scheduler's version (Cargo package version).
    pub scheduler_version: String,
    /// Seconds since the scheduler started.
    pub uptime_s: u64,
    /// One entry per GPU (scheduling domain), in UUID order.
    pub gpus: Vec<GpuStatus>,
}

/// The state of one GPU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuStatus {
    /// The GPU.
    pub uuid: GpuUuid,
    /// Its physical memory, as the first client reported it.
    pub physical_memory: u64,
    /// The memory the scheduler shares out.
    pub capacity: u64,
    /// The policy in force.
    pub policy: Policy,
    /// The quantum in milliseconds.
    pub quantum_ms: u64,
    /// Sum of every client's resident bytes.
    pub resident: u64,
    /// Lock grants so far.
    pub grants: u64,
    /// Times the lock was taken from one client to give it to another.
    pub switches: u64,
    /// Bytes clients reported moving to host memory.
    pub bytes_evicted: u64,
    /// Bytes clients reported moving back.
    pub bytes_restored: u64,
    /// Microseconds clients reported spending on both.
    pub swap_time_us: u64,
    /// Every client attached to this GPU, by id.
    pub clients: Vec<ClientStatus>,
}

/// The state of one client on one GPU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientStatus {
    /// The client's id.
    pub client_id: ClientId,
    /// Its pid (from the socket's peer credentials).
    pub pid: u32,
    /// Its job name.
    pub name: String,
    /// What it is doing.
    pub state: ClientState,
    /// Bytes allocated.
    pub footprint: u64,
    /// Bytes on the GPU.
    pub resident: u64,
    /// Milliseconds it has held the lock in total.
    pub held_ms: u64,
    /// Times it was granted the lock.
    pub grants: u64,
    /// The most it may hold on this GPU, if it has a limit of its own.
    pub memory_limit: Option<u64>,
    /// Its priority (higher goes first).
    pub priority: i32,
    /// Its weight (its time slice in quanta).
    pub weight: u32,
    /// While waiting: milliseconds since it asked for the lock (0 otherwise).
    pub waiting_ms: u64,
}

/// What a client is doing on one GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientState {
    /// Holds the lock.
    Running,
    /// Asked for the lock and waits.
    Waiting,
    /// Neither holds nor wants the lock.
    Idle,
    /// Was asked to give the lock back and has not yet.
    Releasing,
}

impl ClientState {
    /// The state's name in status output.
    pub fn as_str(self) -> &'static str {
        match self {
            ClientState::Running => "running",
            ClientState::Waiting => "waiting",
            ClientState::Idle => "idle",
            ClientState::Releasing => "releasing",
        }
    }
}
