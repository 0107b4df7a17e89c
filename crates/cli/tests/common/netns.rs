//! A farm run by the real `webfarm up --netns`, each node in its own network namespace:
//! its own prefix and address block so it can run beside a user's farm (which uses `wf` and
//! 10.77.0.0/24). Tests that need real interfaces without the supervisor use
//! [`webfarm_netns::Network`] directly.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use webfarm_netns::{Block, Spec};

/// Panics with the reason when this process cannot create namespaces (not root, no `ip`).
pub fn require_root(test: &str) {
    if let Err(e) = webfarm_netns::check_privileges() {
        panic!("{test} runs a farm in network namespaces and needs root: {e}");
    }
}

/// A running `webfarm up --netns`.
pub struct NetnsUp {
    /// The farm file given to `webfarm up`.
    pub config: PathBuf,
    /// The data directory (`data` beside the farm file).
    pub data_dir: PathBuf,
    /// Prefix and block.
    pub spec: Spec,
    child: Option<Child>,
    log: Arc<Mutex<Vec<String>>>,
    readers: Vec<std::thread::JoinHandle<()>>,
    /// More arguments of `webfarm up` (`--no-firewall`).
    extra: Vec<String>,
}

impl NetnsUp {
    /// Starts `webfarm up --config <config> --netns` with `prefix` and `block`, and waits
    /// until it says the farm is up.
    ///
    /// # Panics
    ///
    /// When the farm does not come up within 180 s (with its log).
    pub fn start(config: &Path, prefix: &str, block: &str) -> NetnsUp {
        NetnsUp::start_with(config, prefix, block, &[])
    }

    /// [`NetnsUp::start`] with more arguments for `webfarm up`.
    ///
    /// # Panics
    ///
    /// As [`NetnsUp::start`].
    pub fn start_with(config: &Path, prefix: &str, block: &str, extra: &[&str]) -> NetnsUp {
        let spec = Spec::new(prefix, block.parse::<Block>().unwrap()).unwrap();
        let mut up = NetnsUp {
            config: config.to_path_buf(),
            data_dir: config.parent().unwrap().join("data"),
            spec,
            child: None,
            log: Arc::new(Mutex::new(Vec::new())),
            readers: Vec::new(),
            extra: extra.iter().map(ToString::to_string).collect(),
        };
        let (ok, why) = up.spawn();
        assert!(
            ok,
            "the netns farm did not come up: {why}\n{}",
            up.log_text()
        );
        up
    }

    fn spawn(&mut self) -> (bool, String) {
        let mut up = Command::new(super::bin());
        up.args(["up", "--config"])
            .arg(&self.config)
            .args(["--netns", "--netns-prefix", &self.spec.prefix])
            .args(["--netns-net", &self.spec.block.to_string()])
            .args(&self.extra);
        let (child, ok, why) = super::spawn_up(up, &self.log, &mut self.readers);
        self.child = Some(child);
        (ok, why)
    }

    /// The derived farm file every node runs with.
    pub fn derived(&self) -> PathBuf {
        self.data_dir.join("netns-farm.toml")
    }

    /// `10.x.y.<host>` of the block.
    pub fn addr(&self, host: u8) -> String {
        self.spec.block.addr(host).to_string()
    }

    /// Node `name`'s pid as the supervisor recorded it.
    pub fn pid(&self, name: &str) -> u32 {
        let p = self.data_dir.join("run").join(format!("{name}.pid"));
        std::fs::read_to_string(&p)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            .trim()
            .parse()
            .unwrap()
    }

    /// Runs `webfarm ARGS --config <derived file>`.
    pub fn webfarm(&self, args: &[&str]) -> Output {
        Command::new(super::bin())
            .args(args)
            .arg("--config")
            .arg(self.derived())
            .output()
            .expect("run webfarm")
    }

    /// Everything `webfarm up` printed so far.
    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// The supervisor's pid.
    pub fn supervisor_pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Sends `sig` (`INT`, `KILL`) to the supervisor and waits for it to exit; its exit
    /// code.
    pub fn signal_and_wait(&mut self, sig: &str) -> Option<i32> {
        let pid = self.supervisor_pid();
        Command::new("kill")
            .args([&format!("-{sig}"), &pid.to_string()])
            .status()
            .unwrap();
        let mut child = self.child.take().unwrap();
        let end = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                for r in self.readers.drain(..) {
                    let _ = r.join();
                }
                return status.code();
            }
            assert!(
                Instant::now() < end,
                "webfarm up did not exit after SIG{sig}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts the same farm again (after a crash of the supervisor).
    pub fn restart(&mut self) {
        let (ok, why) = self.spawn();
        assert!(
            ok,
            "the netns farm did not come up again: {why}\n{}",
            self.log_text()
        );
    }
}

impl Drop for NetnsUp {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = self.signal_and_wait("TERM");
        }
    }
}
