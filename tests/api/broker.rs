//! RabbitMQ for the tests, never the machine's default vhost: a vhost of the
//! test's own on the machine's broker (created and deleted with
//! `rabbitmqctl`), or a broker node of the test's own on free ports, which a
//! test may stop and start.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The machine's broker (started before each session; `.ci/run` starts it if down).
const MACHINE_BROKER: &str = "127.0.0.1:5672";

/// Runs `rabbitmqctl` with `args`; panics with its output if it fails.
pub fn rabbitmqctl(args: &[&str]) -> String {
    let output = Command::new("rabbitmqctl")
        .args(args)
        .output()
        .unwrap_or_else(|error| {
            panic!("rabbitmqctl {args:?}: {error} (apt-get install rabbitmq-server)")
        });
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "rabbitmqctl {args:?}: {text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    text
}

/// A vhost of the test's own on the machine's broker, deleted (with every
/// queue in it) when dropped.
pub struct OwnVhost {
    pub name: String,
}

impl OwnVhost {
    pub fn create() -> Self {
        let name = format!("fgtest-{}", uuid::Uuid::new_v4().simple());
        rabbitmqctl(&["add_vhost", &name]);
        rabbitmqctl(&["set_permissions", "-p", &name, "guest", ".*", ".*", ".*"]);
        Self { name }
    }

    pub fn url(&self) -> String {
        format!("amqp://guest:guest@{MACHINE_BROKER}/{}", self.name)
    }

    /// One column of one queue of this vhost (by the end of its name).
    pub fn queue_column(&self, queue_suffix: &str, column: &str) -> String {
        queue_column(&["-p", &self.name], queue_suffix, column)
    }
}

/// `rabbitmqctl list_queues` (with `scope`: a vhost or a node), one column of
/// the queue whose name ends in `queue_suffix`.
fn queue_column(scope: &[&str], queue_suffix: &str, column: &str) -> String {
    let mut args = vec!["list_queues", "-q", "--no-table-headers"];
    args.extend_from_slice(scope);
    args.extend_from_slice(&["name", column]);
    rabbitmqctl(&args)
        .lines()
        .map(|line| line.split('\t').collect::<Vec<_>>())
        .find(|row| row[0].ends_with(queue_suffix))
        .and_then(|row| row.get(1).map(|value| value.to_string()))
        .unwrap_or_else(|| panic!("no queue ending in {queue_suffix} ({scope:?})"))
}

impl Drop for OwnVhost {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl")
            .args(["delete_vhost", &self.name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A RabbitMQ node of the test's own on free ports, with its data in a
/// temporary directory, so that a test may stop and start it.
pub struct OwnRabbit {
    pub port: u16,
    node: String,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl OwnRabbit {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("a directory for the node");
        let port = free_port();
        let node = format!(
            "fgtest{}@localhost",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        let mut rabbit = Self {
            port,
            node,
            dir,
            child: None,
        };
        rabbit.run();
        rabbit
    }

    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// One column of one queue of this node (by the end of its name).
    pub fn queue_column(&self, queue_suffix: &str, column: &str) -> String {
        queue_column(&["-n", &self.node], queue_suffix, column)
    }

    /// Starts the node on its port and data (again, after [`Self::stop`]).
    pub fn run(&mut self) {
        let base = self.dir.path();
        std::fs::write(base.join("plugins"), "[].").expect("the plugins file");
        // The Debian wrapper runs the node as the rabbitmq user.
        let _ = Command::new("chown")
            .args(["-R", "rabbitmq:rabbitmq"])
            .arg(base)
            .status();
        let path = |name: &str| -> PathBuf { base.join(name) };
        let child = Command::new("rabbitmq-server")
            .env("RABBITMQ_NODENAME", &self.node)
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_DIST_PORT", free_port().to_string())
            .env("RABBITMQ_MNESIA_BASE", path("mnesia"))
            .env("RABBITMQ_LOG_BASE", path("log"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", path("plugins"))
            .env("RABBITMQ_PID_FILE", path("pid"))
            .env("RABBITMQ_FEATURE_FLAGS_FILE", path("feature_flags"))
            .env("RABBITMQ_PLUGINS_EXPAND_DIR", path("expand"))
            .env("RABBITMQ_GENERATED_CONFIG_DIR", path("config"))
            .env("RABBITMQ_CONFIG_FILE", path("rabbitmq"))
            .env("RABBITMQ_ADVANCED_CONFIG_FILE", path("advanced.config"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("rabbitmq-server starts (apt-get install rabbitmq-server)");
        self.child = Some(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !answers(self.port) {
            assert!(
                std::time::Instant::now() < deadline,
                "the test's RabbitMQ node never listened on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Stops the node (as an operator would) and waits until its port is closed.
    pub fn stop(&mut self) {
        assert!(self.halt(), "the node did not stop");
    }

    /// Stops the node; false if its port is still open after 30 s.
    fn halt(&mut self) -> bool {
        let _ = Command::new("rabbitmqctl")
            .args(["-n", &self.node, "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while answers(self.port) {
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        true
    }
}

impl Drop for OwnRabbit {
    fn drop(&mut self) {
        // Never a panic here: it would abort the test binary mid-failure.
        self.halt();
    }
}

fn answers(port: u16) -> bool {
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    std::net::TcpStream::connect_timeout(&address, Duration::from_millis(300)).is_ok()
}

/// A free port between 10000 and 18000: below Linux's ephemeral range (32768
/// and up), so that no server binding port 0 takes it while the node is
/// stopped, and below the Redis Clusters' ports (tests/api/redis_cluster.rs,
/// 20000 and up).
fn free_port() -> u16 {
    use rand::Rng;
    let mut random = rand::rng();
    (0..1000)
        .map(|_| random.random_range(10_000..18_000))
        .find(|port| std::net::TcpListener::bind(("127.0.0.1", *port)).is_ok())
        .expect("a free port between 10000 and 18000")
}
