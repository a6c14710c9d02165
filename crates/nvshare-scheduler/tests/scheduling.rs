//! Lock scheduling through the real daemon: exclusion when memory does not
//! fit, co-running when it does, quantum preemption in arrival order, and a
//! dead holder's lock passed on at once.

use crate::support::{Daemon, GIB, GPU, HookClient, MIB, PATIENCE, handshake};
use nvshare_proto::{ClientBody, ClientState, Role, SchedulerBody, SchedulerMsg};
use std::time::{Duration, Instant};

/// A dead holder's lock must be reassigned within this (the requirement).
const REASSIGN_BOUND: Duration = Duration::from_millis(100);

#[test]
fn oversubscribed_clients_exclude_each_other() {
    let daemon = Daemon::start(&["--memory-capacity", "1GiB"]);
    let mut first = HookClient::connect_attached(&daemon.socket, "first", 800 * MIB);
    let mut second = HookClient::connect_attached(&daemon.socket, "second", 800 * MIB);
    assert_eq!(first.capacity, GIB);

    first.request();
    first.wait_grant(PATIENCE).unwrap();
    second.request();
    // The default quantum is 30 s: nothing may take the lock from `first`.
    second.assert_no_grant(Duration::from_millis(600));

    let released = Instant::now();
    first.release();
    // `first` keeps its 800 MiB resident when it releases; the daemon must
    // have it evicted before `second` may fill the GPU.
    let granted = second.wait_grant(PATIENCE).unwrap();
    assert!(granted >= released);
    assert!(
        first.resident() + second.resident() <= GIB,
        "both resident: {} + {}",
        first.resident(),
        second.resident()
    );
}

#[test]
fn clients_that_fit_run_together() {
    let daemon = Daemon::start(&["--memory-capacity", "1GiB"]);
    let mut a = HookClient::connect_attached(&daemon.socket, "a", 400 * MIB);
    let mut b = HookClient::connect_attached(&daemon.socket, "b", 400 * MIB);
    a.request();
    a.wait_grant(PATIENCE).unwrap();
    b.request();
    b.wait_grant(PATIENCE).unwrap();
    assert!(a.holding() && b.holding());

    let status = daemon.control().status();
    let running = status.gpus[0]
        .clients
        .iter()
        .filter(|c| c.state == ClientState::Running)
        .count();
    assert_eq!(running, 2, "{status:?}");
}

#[test]
fn exclusive_policy_keeps_one_holder_even_when_memory_fits() {
    let daemon = Daemon::start(&["--policy", "exclusive", "--memory-capacity", "1GiB"]);
    let mut a = HookClient::connect_attached(&daemon.socket, "a", 10 * MIB);
    let mut b = HookClient::connect_attached(&daemon.socket, "b", 10 * MIB);
    a.request();
    a.wait_grant(PATIENCE).unwrap();
    b.request();
    b.assert_no_grant(Duration::from_millis(400));
    a.release();
    b.wait_grant(PATIENCE).unwrap();
}

#[test]
fn the_quantum_preempts_holders_in_arrival_order() {
    let quantum = Duration::from_millis(200);
    let daemon = Daemon::start(&["--memory-capacity", "1GiB", "--quantum", "200ms"]);
    let mut clients: Vec<HookClient> = ["first", "second", "third"]
        .iter()
        .map(|name| HookClient::connect_attached(&daemon.socket, name, 800 * MIB))
        .collect();
    assert_eq!(clients[0].quantum_ms, 200);

    clients[0].request();
    let mut granted_at = clients[0].wait_grant(PATIENCE).unwrap();
    for client in &clients[1..] {
        client.request();
        // Give the daemon time to queue this one before the next.
        std::thread::sleep(Duration::from_millis(20));
    }
    // Each holder is asked to drop once its quantum is over and the next in
    // arrival order is granted; the preempted client queues again behind.
    let order = [0, 1, 2, 0, 1];
    for pair in order.windows(2) {
        let (holder, next) = (pair[0], pair[1]);
        let (evict_bytes, dropped_at) = clients[holder].wait_drop(PATIENCE).unwrap();
        assert!(evict_bytes > 0, "a drop must make room for the next client");
        // Measured from the client's side, where the grant may arrive late
        // on a loaded machine: half the quantum tells "waited for the
        // quantum" from "preempted at once" with room to spare.
        let held = dropped_at.duration_since(granted_at);
        assert!(
            held >= quantum / 2,
            "dropped after {held:?}, before the quantum ended"
        );
        clients[holder].request();
        granted_at = clients[next].wait_grant(PATIENCE).unwrap();
        for (i, other) in clients.iter().enumerate() {
            assert_eq!(other.holding(), i == next, "client {i} holding");
        }
        let resident: u64 = clients.iter().map(HookClient::resident).sum();
        assert!(resident <= GIB, "{resident} bytes resident on a 1 GiB GPU");
    }
}

#[test]
fn a_closed_holder_connection_hands_the_lock_on_at_once() {
    let daemon = Daemon::start(&["--memory-capacity", "1GiB"]);
    let mut holder = HookClient::connect_attached(&daemon.socket, "holder", 800 * MIB);
    let mut waiter = HookClient::connect_attached(&daemon.socket, "waiter", 800 * MIB);
    holder.request();
    holder.wait_grant(PATIENCE).unwrap();
    waiter.request();
    waiter.assert_no_grant(Duration::from_millis(200));

    let closed = Instant::now();
    drop(holder);
    let latency = waiter.wait_grant(PATIENCE).unwrap() - closed;
    assert!(latency <= REASSIGN_BOUND, "reassigned after {latency:?}");
}

#[test]
fn a_killed_holder_process_hands_the_lock_on_within_100ms() {
    let daemon = Daemon::start(&["--memory-capacity", "1GiB"]);
    // The holder speaks the protocol on a plain blocking connection, which
    // is then handed to a child process: no thread of ours keeps it open.
    let (mut holder, _) = handshake(
        &daemon.socket,
        Role::Client {
            name: "doomed".into(),
            group: None,
        },
    );
    holder.send(
        &ClientBody::Attach {
            physical_memory: 80 * GIB,
            footprint: 800 * MIB,
            resident: 0,
            holding: false,
        }
        .on(GPU),
    );
    assert!(matches!(
        holder.recv::<SchedulerMsg>(PATIENCE),
        Ok(SchedulerMsg::Gpu {
            body: SchedulerBody::Welcome { .. },
            ..
        })
    ));
    holder.send(&ClientBody::RequestLock.on(GPU));
    assert!(matches!(
        holder.recv::<SchedulerMsg>(PATIENCE),
        Ok(SchedulerMsg::Gpu {
            body: SchedulerBody::LockGranted { .. },
            ..
        })
    ));
    let mut waiter = HookClient::connect_attached(&daemon.socket, "waiter", 800 * MIB);
    waiter.request();

    // SAFETY: the child only calls `pause` (async-signal-safe) until it is
    // killed; it touches no lock or allocator state copied from this
    // multi-threaded process.
    let child = match unsafe { nix::unistd::fork() }.unwrap() {
        nix::unistd::ForkResult::Child => loop {
            // SAFETY: pause has no preconditions.
            unsafe { libc::pause() };
        },
        nix::unistd::ForkResult::Parent { child } => child,
    };
    // The child is now the only process holding the holder's socket.
    drop(holder);
    waiter.assert_no_grant(Duration::from_millis(300));

    let killed = Instant::now();
    nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL).unwrap();
    let granted = waiter.wait_grant(PATIENCE);
    nix::sys::wait::waitpid(child, None).unwrap();
    let latency = granted.unwrap() - killed;
    assert!(latency <= REASSIGN_BOUND, "reassigned after {latency:?}");
    assert!(daemon.logged("client disconnected"));
}
