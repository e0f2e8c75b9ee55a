//! A real Kubernetes API server for tests: `scripts/dev-cluster up` in a run dir of its own,
//! stopped (`down`) when the guard is dropped, and `kubectl` against it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use super::istio_crds;
use super::netns::TestHost;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub struct DevCluster {
    run_dir: PathBuf,
    pub kubeconfig: PathBuf,
}

impl DevCluster {
    /// How `rudder serve` watches this cluster: every namespace, with `istio-system` as the
    /// control plane's namespace (mesh config, status Lease).
    pub fn kubernetes_options(&self) -> rudder::serve::KubernetesOptions {
        rudder::serve::KubernetesOptions {
            connection: rudder::serve::KubeConnection::Kubeconfig(self.kubeconfig.clone()),
            namespaces: rudder::source::kube::NamespaceFilter::default(),
            lease_namespace: "istio-system".to_string(),
            control_plane_namespace: "istio-system".to_string(),
        }
    }

    /// Starts a cluster; `name` tells its run dir apart in /tmp.
    pub fn up(name: &str) -> DevCluster {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        let run_dir =
            std::env::temp_dir().join(format!("rudder-{name}-{}-{nanos}", std::process::id()));
        let mut cluster = DevCluster {
            run_dir,
            kubeconfig: PathBuf::new(),
        };
        let stdout = cluster.script("up");
        cluster.kubeconfig = PathBuf::from(
            stdout
                .lines()
                .rfind(|line| !line.trim().is_empty())
                .expect("a kubeconfig path")
                .trim(),
        );
        cluster
    }

    /// Stops and starts kube-apiserver (etcd and its data stay).
    pub fn restart_apiserver(&self) {
        self.script("restart-apiserver");
    }

    /// Stops kube-apiserver only: an outage, with etcd and its data kept.
    pub fn stop_apiserver(&self) {
        self.script("stop-apiserver");
    }

    /// Starts kube-apiserver again after [`DevCluster::stop_apiserver`], on the same port.
    pub fn start_apiserver(&self) {
        self.script("start-apiserver");
    }

    /// Stops and starts etcd (same ports, same data) under a running kube-apiserver.
    pub fn restart_etcd(&self) {
        self.script("restart-etcd");
    }

    fn script(&self, command: &str) -> String {
        let output = Command::new(root().join("scripts/dev-cluster"))
            .arg(command)
            .env("RUDDER_DEV_CLUSTER_DIR", &self.run_dir)
            // Should this process die without unwinding, the script's watchdog stops the cluster.
            .env(
                "RUDDER_DEV_CLUSTER_OWNER_PID",
                std::process::id().to_string(),
            )
            .stdin(Stdio::null())
            .output()
            .expect("run scripts/dev-cluster");
        assert!(
            output.status.success(),
            "scripts/dev-cluster {command} failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Installs Istio's own CRDs of the version `hack/istiod/go.mod` pins, as the README says
    /// (`scripts/istio-crds | kubectl apply --server-side -f -`), and waits until they are served.
    pub fn install_istio_crds(&self) {
        self.install_istio_crds_of(&istio_crds::pinned());
    }

    /// [`DevCluster::install_istio_crds`] for another `istio.io/api` version.
    pub fn install_istio_crds_of(&self, version: &str) {
        self.apply_crds(
            &["apply", "--server-side", "-f", "-"],
            &istio_crds::yaml(version),
        );
    }

    /// Runs kubectl with CRDs as its input, then waits until every CRD is served. Unlike
    /// [`DevCluster::ok`], warnings pass: Istio's own CRDs of some releases make the API server
    /// warn (1.22's `format: binary`), and they are Istio's to fix.
    pub fn apply_crds(&self, args: &[&str], crds: &str) -> String {
        let output = self.kubectl(args, crds);
        assert!(
            output.status.success(),
            "kubectl {}:\n{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
        self.wait_for_crds();
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Waits until every CRD is served. `kubectl wait` fails at once ("`.status.conditions`
    /// accessor error: <nil>") on a CRD so new that the API server has not given it conditions
    /// yet, so that failure is retried.
    pub fn wait_for_crds(&self) {
        let args = [
            "wait",
            "--for",
            "condition=established",
            "crd",
            "--all",
            "--timeout=60s",
        ];
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let output = self.kubectl(&args, "");
            if output.status.success() {
                return;
            }
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(
                stderr.contains("accessor error") && std::time::Instant::now() < deadline,
                "kubectl {}:\n{stderr}",
                args.join(" ")
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }

    /// Runs kubectl against this cluster with `stdin` as its input.
    pub fn kubectl(&self, args: &[&str], stdin: &str) -> Output {
        let program = std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".to_string());
        let mut child = Command::new(&program)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|error| {
                panic!("cannot run {program} (install kubectl or set KUBECTL): {error}")
            });
        let written = child
            .stdin
            .take()
            .expect("stdin is piped")
            .write_all(stdin.as_bytes());
        // kubectl stops reading at the first document it refuses; its stderr says why.
        if let Err(error) = written {
            assert_eq!(
                error.kind(),
                std::io::ErrorKind::BrokenPipe,
                "write to kubectl: {error}"
            );
        }
        child.wait_with_output().expect("kubectl runs")
    }

    /// Runs kubectl and returns its stdout; fails the test if kubectl fails or the API server
    /// warns (an unknown schema `format`, a deprecated field: users would see it on every apply).
    pub fn ok(&self, args: &[&str], stdin: &str) -> String {
        let output = self.kubectl(args, stdin);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success() && !stderr.contains("Warning:"),
            "kubectl {}:\n{}{stderr}",
            args.join(" "),
            String::from_utf8_lossy(&output.stdout),
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// `kubectl apply -f -` of `yaml`.
    pub fn apply(&self, yaml: &str) -> String {
        self.ok(&["apply", "-f", "-"], yaml)
    }

    /// Runs kubectl expecting it to fail; returns its stderr.
    pub fn refused(&self, args: &[&str], stdin: &str) -> String {
        let output = self.kubectl(args, stdin);
        assert!(
            !output.status.success(),
            "kubectl {} should have failed for:\n{stdin}\nbut said:\n{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stdout)
        );
        String::from_utf8_lossy(&output.stderr).into_owned()
    }
}

impl Drop for DevCluster {
    fn drop(&mut self) {
        let _ = Command::new(root().join("scripts/dev-cluster"))
            .arg("down")
            .env("RUDDER_DEV_CLUSTER_DIR", &self.run_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Namespaces, the reviews and details Services on `port` (cluster IPs in `10.96.<the host's
/// subnet>.0/24`), their Pods on the test host and their EndpointSlices. `reviews` lists `(pod,
/// version, last octet)`.
pub fn workloads(host: &TestHost, port: u16, reviews: &[(&str, &str, u8)]) -> String {
    let mut docs = vec![
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: bookinfo}\n".to_string(),
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: istio-system}\n".to_string(),
    ];
    let subnet = host.subnet();
    let services = [
        ("reviews", format!("10.96.{subnet}.1")),
        ("details", format!("10.96.{subnet}.2")),
    ];
    for (name, cluster_ip) in services {
        docs.push(format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: bookinfo}}\n\
             spec:\n  clusterIP: {cluster_ip}\n  selector: {{app: {name}}}\n  ports: [{{name: http, port: {port}}}]\n"
        ));
    }
    let mut pods: Vec<(&str, &str, &str, u8)> = reviews
        .iter()
        .map(|(pod, version, last)| ("reviews", *pod, *version, *last))
        .collect();
    pods.push(("details", "details-v1", "v1", 3));
    for (app, pod, version, _) in &pods {
        docs.push(format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {pod}\n  namespace: bookinfo\n  labels: {{app: {app}, version: {version}}}\n\
             spec:\n  containers: [{{name: app, image: example.invalid/app}}]\n"
        ));
    }
    for app in ["reviews", "details"] {
        let endpoints: String = pods
            .iter()
            .filter(|(owner, ..)| *owner == app)
            .map(|(_, pod, _, last)| {
                format!(
                    "- addresses: [\"{}\"]\n  conditions: {{ready: true}}\n  targetRef: {{kind: Pod, name: {pod}, namespace: bookinfo}}\n",
                    host.address(*last)
                )
            })
            .collect();
        docs.push(format!(
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {app}-1\n  namespace: bookinfo\n  \
             labels: {{kubernetes.io/service-name: {app}}}\naddressType: IPv4\nports: [{{name: http, port: {port}}}]\nendpoints:\n{endpoints}"
        ));
    }
    docs.join("---\n")
}
