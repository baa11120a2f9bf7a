//! The built binary on its own: copied out of the source tree into an empty
//! directory, it starts on the embedded default, keeps its data in `./data/`
//! there, and serves the pages and the static files embedded in it.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use reqwest::StatusCode;

/// The server binary, started in `dir` on a free port; killed when dropped.
struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `binary` in `dir` and reads the URL from its start-up banner.
fn start(binary: &std::path::Path, dir: &std::path::Path) -> Server {
    let mut child = Command::new(binary)
        .current_dir(dir)
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .env("BIND_ADDR", "127.0.0.1:0")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the binary starts");
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut lines = BufReader::new(stdout).lines().map_while(Result::ok);
    let banner = lines.by_ref().find_map(|line| {
        line.strip_prefix("flashguard is listening on ")
            .map(str::to_string)
    });
    // Keep reading: the server goes on writing its log to standard output.
    std::thread::spawn(move || lines.for_each(drop));
    let url = banner.expect("the banner names the URL");
    Server { child, url }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_runs_outside_the_source_tree() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let binary = dir.path().join("flashguard");
    std::fs::copy(env!("CARGO_BIN_EXE_flashguard"), &binary).expect("copy the binary");
    let server = tokio::task::spawn_blocking({
        let (binary, dir) = (binary.clone(), dir.path().to_path_buf());
        move || start(&binary, &dir)
    })
    .await
    .expect("start task");
    let client = reqwest::Client::new();

    let page = client.get(format!("{}/", server.url)).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let script = client
        .get(format!("{}/static/app.js", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(script.status(), StatusCode::OK);
    assert!(
        script.headers()["content-type"]
            .to_str()
            .unwrap()
            .contains("javascript")
    );
    let ready = client
        .get(format!("{}/readyz", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::OK);

    assert!(
        dir.path().join("data/flashguard.db").is_file(),
        "the embedded database lives in ./data/ where the binary was started"
    );
    assert!(dir.path().join("data/generated-secrets.env").is_file());
    drop(server);
}
