//! Windows programs under Wine, for the Windows CLI's tests: Debian 13's Wine 10 in the
//! Debian 13 root `ci/setup.sh` makes (Debian 12's Wine 8 cannot load a current Rust
//! binary: ../shared/ENVIRONMENT.md, "Windows under Wine"), entered with chroot, which
//! shares this machine's network; and `TcpForward`, an engine's Unix socket on a
//! loopback TCP port, since no named pipe of a Linux engine exists under Wine.

use std::{
    net::{Ipv4Addr, Shutdown, TcpListener, TcpStream},
    os::unix::{fs::MetadataExt, net::UnixStream},
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
};

use xshell::{cmd, Cmd, Shell};

/// The Debian 13 root holding Wine (`wine_root` in ci/setup.sh).
pub const ROOT: &str = "/var/lib/stigmer-wine";
/// The Wine prefix inside it that ci/setup.sh makes once (`wine_prefix`).
const PREFIX: &str = "/opt/wineprefix";
const WINE: &str = "/usr/lib/wine/wine64";

/// What is missing to run Windows programs here, each with how to get it: for `cargo
/// xtask test`'s prerequisite check.
pub fn missing() -> Vec<String> {
    let root = Path::new(ROOT);
    let mut missing = Vec::new();
    if !root.join(WINE.trim_start_matches('/')).is_file() {
        missing.push(format!(
            "Wine 10 is missing from {ROOT} (the Windows CLI's tests run under it): run `bash ci/setup.sh` \
             (it makes a Debian 13 root there with debootstrap and installs wine64 in it)"
        ));
    } else if !root.join("proc/self").exists()
        || !root.join(PREFIX.trim_start_matches('/')).join("system.reg").is_file()
    {
        missing.push(format!(
            "{ROOT} lacks its /proc or its Wine prefix: run `bash ci/setup.sh` (it binds /proc into the \
             root and makes the prefix)"
        ));
    }
    missing
}

/// `%USERPROFILE%` of the programs `WinDir::run` starts, as this machine sees it: Wine
/// sets it from its prefix (whatever the environment says), and chroot runs every
/// program as root. Shared by every run: a test that writes there cleans up after itself.
pub fn user_profile() -> PathBuf {
    Path::new(ROOT).join(PREFIX.trim_start_matches('/')).join("drive_c/users/root")
}

/// A directory inside the Wine root, removed on drop, for one test's Windows files.
pub struct WinDir {
    dir: tempfile::TempDir,
}

impl WinDir {
    /// Panics with how to set Wine up when it is not.
    pub fn new() -> WinDir {
        let missing = missing();
        assert!(missing.is_empty(), "{}", missing.join("\n"));
        let tmp = Path::new(ROOT).join("tmp");
        WinDir { dir: tempfile::tempdir_in(tmp).expect("creating a directory in the Wine root") }
    }

    /// The directory as this machine sees it.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `path` (below this directory) as a Windows program sees it: Wine's drive Z: is
    /// the root of the chroot.
    pub fn windows_path(&self, path: &Path) -> String {
        let inside = path.strip_prefix(ROOT).expect("a path inside the Wine root");
        format!("Z:\\{}", inside.display().to_string().replace('/', "\\"))
    }

    /// Runs `exe` (a file below this directory) under Wine with `args`; the returned
    /// command takes `.env()` like any other, and Wine hands the variables on. chroot
    /// needs root: anyone else (GitHub's runner user) goes through `sudo`, keeping the
    /// environment.
    pub fn run<'a>(&self, sh: &'a Shell, exe: &Path, args: &[&str]) -> Cmd<'a> {
        let inside = PathBuf::from("/").join(exe.strip_prefix(ROOT).expect("a program inside the Wine root"));
        // /proc/self belongs to this process's effective user.
        let root = std::fs::metadata("/proc/self").is_ok_and(|proc| proc.uid() == 0);
        let chroot = if root {
            cmd!(sh, "chroot {ROOT} {WINE} {inside} {args...}")
        } else {
            cmd!(sh, "sudo --preserve-env chroot {ROOT} {WINE} {inside} {args...}")
        };
        chroot
            .env("WINEPREFIX", PREFIX)
            // Wine's own diagnostics (fixme lines, `XDG_RUNTIME_DIR is invalid`) are
            // not the program's.
            .env("WINEDEBUG", "-all")
    }
}

impl Default for WinDir {
    fn default() -> Self {
        WinDir::new()
    }
}

/// A loopback TCP port in front of an engine's Unix socket, for as long as it lives:
/// what `DOCKER_HOST=tcp://127.0.0.1:PORT` reaches. It listens on 127.0.0.1 only.
pub struct TcpForward {
    port: u16,
    stopped: Arc<AtomicBool>,
}

impl TcpForward {
    /// Forwards each connection to the socket at `socket` (a path), in threads of its own.
    pub fn start(socket: &Path) -> TcpForward {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("listening on 127.0.0.1");
        let port = listener.local_addr().unwrap().port();
        let stopped = Arc::new(AtomicBool::new(false));
        let (socket, stop) = (socket.to_path_buf(), stopped.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                let Ok(engine) = UnixStream::connect(&socket) else { continue };
                pipe(client, engine);
            }
        });
        TcpForward { port, stopped }
    }

    /// `tcp://127.0.0.1:PORT`.
    pub fn docker_host(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.port)
    }
}

impl Drop for TcpForward {
    /// Closes the port: one last connection wakes the accepting thread, which then stops
    /// (connections already forwarded end when their sides close).
    fn drop(&mut self) {
        self.stopped.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port));
    }
}

/// Copies both ways between a client and the engine until either side closes.
fn pipe(client: TcpStream, engine: UnixStream) {
    let (mut client_read, mut engine_write) = (client.try_clone().unwrap(), engine.try_clone().unwrap());
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut client_read, &mut engine_write);
        let _ = engine_write.shutdown(Shutdown::Write);
    });
    let (mut engine_read, mut client_write) = (engine, client);
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut engine_read, &mut client_write);
        let _ = client_write.shutdown(Shutdown::Write);
    });
}
