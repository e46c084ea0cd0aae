//! The children's lifetime (a spawner thread, `PR_SET_PDEATHSIG`, the `atexit` teardown) and
//! the harness's own tokio runtime.

use std::future::Future;
use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::sync::{Arc, Mutex, OnceLock, mpsc};

use super::{Inner, lock};

/// Every live instance, torn down by the atexit hook.
pub(super) static REGISTRY: Mutex<Vec<Arc<Inner>>> = Mutex::new(Vec::new());

pub(super) fn register(inner: &Arc<Inner>) {
    static HOOK: OnceLock<()> = OnceLock::new();
    HOOK.get_or_init(|| {
        // SAFETY: registers a plain `extern "C" fn` with the C runtime.
        let rc = unsafe { libc::atexit(teardown_at_exit) };
        assert_eq!(rc, 0, "atexit failed");
    });
    lock(&REGISTRY).push(Arc::clone(inner));
}

extern "C" fn teardown_at_exit() {
    // Unwinding out of an `extern "C"` function aborts: contain any panic.
    let _ = std::panic::catch_unwind(|| {
        let all = std::mem::take(&mut *lock(&REGISTRY));
        for inner in all {
            inner.shutdown();
        }
    });
}

/// Makes the child die with SIGKILL when the thread that spawned it (the spawner thread, which
/// lives as long as the process) exits, i.e. when the test process dies however it dies.
pub(super) fn die_with_parent(cmd: &mut Command) {
    // SAFETY: getpid is always safe.
    let parent = unsafe { libc::getpid() };
    // SAFETY: the closure only makes async-signal-safe syscalls and does not allocate.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died between fork and prctl.
            if libc::getppid() != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

type SpawnRequest = (Command, mpsc::Sender<io::Result<Child>>);

/// Spawns `cmd` from a dedicated long-lived thread (PDEATHSIG is tied to the spawning thread,
/// and test threads come and go).
pub(super) fn spawn_child(cmd: Command) -> io::Result<Child> {
    static SPAWNER: OnceLock<mpsc::Sender<SpawnRequest>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("controlplane-spawner".into())
            .spawn(move || {
                while let Ok((mut cmd, reply)) = rx.recv() {
                    let _ = reply.send(cmd.spawn());
                }
                // Unreachable while the sender lives in a static; never exit regardless.
                loop {
                    std::thread::park();
                }
            })
            .expect("starting the control plane spawner thread");
        tx
    });
    let gone = || io::Error::other("the control plane spawner thread is gone");
    let (reply_tx, reply_rx) = mpsc::channel();
    spawner.send((cmd, reply_tx)).map_err(|_| gone())?;
    reply_rx.recv().map_err(|_| gone())?
}

/// The harness's own tokio runtime: lets the synchronous helpers make requests from any thread,
/// inside or outside the tests' runtimes.
pub(super) fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("controlplane-rt")
            .enable_all()
            .build()
            .expect("building the control plane runtime")
    })
}

/// Runs `fut` on the harness runtime and blocks the calling thread until it completes (works from
/// inside another runtime too, blocking that thread).
pub(super) fn block_on<F>(fut: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handle = runtime().spawn(fut);
    match futures::executor::block_on(handle) {
        Ok(v) => v,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => panic!("control plane task failed: {e}"),
    }
}
