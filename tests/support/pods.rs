//! Pods for interception tests, without Kubernetes or Docker: each pod is a network namespace
//! on `10.231.<subnet>.2/24`, joined by a veth pair to a "node" namespace that routes between the
//! pods (`.1` of every pod subnet is the node). A pod can get iptables rules like istio-init's
//! (REDIRECT or TPROXY mode) and a stock Envoy sidecar run with a dedicated group id, so that its own
//! connections escape the redirection. rudder runs inside the node namespace, so nothing of this
//! touches the host's network. Needs root, iproute2 and iptables; every failure to set things up
//! panics (a machine that cannot do this must fail the test, not skip it). Dropping the
//! [`Node`] and the [`Pod`]s removes their namespaces, and the rules and processes in them.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The group Envoy runs as; the iptables rules let its traffic through (istio-init's 1337).
pub const PROXY_GID: u32 = 1337;
/// The packet mark of TPROXY interception (istio-init's 1337, as `original_src` sets it).
pub const TPROXY_MARK: u32 = 1337;

fn run(program: &str, args: &[&str], stdin: Option<&str>) -> String {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("run {program} (is it installed?): {error}"));
    if let Some(input) = stdin
        && let Some(mut pipe) = child.stdin.take()
    {
        pipe.write_all(input.as_bytes())
            .expect("write to the command's stdin");
    }
    let output = child.wait_with_output().expect("wait for the command");
    assert!(
        output.status.success(),
        "{program} {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn ip(args: &[&str]) {
    run("ip", args, None);
}

fn delete_namespace(name: &str) {
    let _ = Command::new("ip").args(["netns", "del", name]).output();
}

/// Runs `work` on a thread that has joined the network namespace `name`: sockets it creates
/// belong to that namespace.
fn in_namespace<T: Send + 'static>(name: &str, work: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/var/run/netns/{name}");
    std::thread::spawn(move || {
        let namespace = std::fs::File::open(&path).expect("open the network namespace");
        nix::sched::setns(namespace.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
            .expect("join the network namespace");
        work()
    })
    .join()
    .expect("the namespace thread")
}

/// The router namespace between the pods, where rudder runs.
pub struct Node {
    pub namespace: String,
    tag: String,
    /// Processes run in the namespace (rudder); killed before it goes.
    children: Vec<Child>,
}

impl Node {
    /// A node whose namespaces are named after `label`, unique among tests running at once.
    pub fn create(label: &str) -> Node {
        let tag = format!("{}", std::process::id() % 100_000);
        let namespace = format!("rdrx-{tag}-{label}");
        delete_namespace(&namespace);
        ip(&["netns", "add", &namespace]);
        let node = Node {
            namespace,
            tag,
            children: Vec::new(),
        };
        ip(&["-n", &node.namespace, "link", "set", "lo", "up"]);
        run(
            "ip",
            &[
                "netns",
                "exec",
                &node.namespace,
                "sysctl",
                "-q",
                "-w",
                "net.ipv4.ip_forward=1",
            ],
            None,
        );
        node
    }

    /// Starts `program` with `args` inside the node namespace; it is killed when the node goes.
    pub fn spawn(&mut self, program: &Path, args: &[&str], log: &Path) {
        let log = std::fs::File::create(log).expect("create a log file");
        let child = Command::new("ip")
            .args(["netns", "exec", &self.namespace])
            .arg(program)
            .args(args)
            .stdout(log.try_clone().expect("a log handle"))
            .stderr(log)
            .spawn()
            .expect("start a process in the node namespace");
        self.children.push(child);
    }

    /// A pod on `10.231.<subnet>.0/24` (unique among tests running at once), routed through
    /// this node.
    pub fn pod(&self, subnet: u8) -> Pod {
        let namespace = format!("rdrx-{}-pod{subnet}", self.tag);
        let node_link = format!("rxn{}s{subnet}", self.tag);
        let pod_link = format!("rxp{}s{subnet}", self.tag);
        delete_namespace(&namespace);
        ip(&["netns", "add", &namespace]);
        let pod = Pod {
            namespace,
            ip: format!("10.231.{subnet}.2"),
            gateway: format!("10.231.{subnet}.1"),
            envoy: None,
        };
        ip(&[
            "-n",
            &self.namespace,
            "link",
            "add",
            &node_link,
            "type",
            "veth",
            "peer",
            "name",
            &pod_link,
            "netns",
            &pod.namespace,
        ]);
        ip(&[
            "-n",
            &self.namespace,
            "addr",
            "add",
            &format!("{}/24", pod.gateway),
            "dev",
            &node_link,
        ]);
        ip(&["-n", &self.namespace, "link", "set", &node_link, "up"]);
        ip(&["-n", &pod.namespace, "link", "set", "lo", "up"]);
        ip(&[
            "-n",
            &pod.namespace,
            "addr",
            "add",
            &format!("{}/24", pod.ip),
            "dev",
            &pod_link,
        ]);
        ip(&["-n", &pod.namespace, "link", "set", &pod_link, "up"]);
        ip(&[
            "-n",
            &pod.namespace,
            "route",
            "add",
            "default",
            "via",
            &pod.gateway,
        ]);
        pod
    }

    /// Binds a socket on `address` inside the node namespace.
    pub fn bind(&self, address: &str) -> TcpListener {
        bind_in(&self.namespace, address)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        // The pods' veth pairs go with whichever end's namespace is deleted first.
        delete_namespace(&self.namespace);
    }
}

fn bind_in(namespace: &str, address: &str) -> TcpListener {
    let address = address.to_string();
    in_namespace(namespace, move || {
        TcpListener::bind(&address).unwrap_or_else(|error| panic!("bind {address}: {error}"))
    })
}

/// A pod: a network namespace, and perhaps an Envoy sidecar with interception rules.
pub struct Pod {
    pub namespace: String,
    pub ip: String,
    gateway: String,
    envoy: Option<Sidecar>,
}

struct Sidecar {
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

/// What an HTTP request from inside a pod came back with.
#[derive(Debug)]
pub struct HttpReply {
    pub status: u16,
    pub body: String,
}

/// The end of istio-init's nat ISTIO_OUTPUT chain, shared by both interception modes: Envoy's
/// own traffic (its group), loopback and the control plane at `control_plane` go out as they
/// are, all other outbound TCP is redirected to 15001.
fn outbound_exits(control_plane: SocketAddr) -> String {
    format!(
        "-A ISTIO_OUTPUT -m owner --gid-owner {gid} -j RETURN\n\
         -A ISTIO_OUTPUT -d 127.0.0.1/32 -j RETURN\n\
         -A ISTIO_OUTPUT -p tcp -d {cp_ip}/32 --dport {cp_port} -j RETURN\n\
         -A ISTIO_OUTPUT -j ISTIO_REDIRECT\n\
         COMMIT\n",
        gid = PROXY_GID,
        cp_ip = control_plane.ip(),
        cp_port = control_plane.port(),
    )
}

impl Pod {
    /// Loads iptables `rules` (iptables-restore format) into the pod's network namespace.
    fn restore_rules(&self, rules: &str) {
        run(
            "ip",
            &["netns", "exec", &self.namespace, "iptables-restore"],
            Some(rules),
        );
    }

    /// Binds a socket on `address` inside the pod (the application's side).
    pub fn bind(&self, address: &str) -> TcpListener {
        bind_in(&self.namespace, address)
    }

    /// istio-init's REDIRECT rules: inbound TCP to 15006, outbound TCP to 15001, except Envoy's
    /// own traffic (its group), loopback traffic of the application, Envoy's connections to the
    /// application from 127.0.0.6, and connections to the control plane at `control_plane`.
    pub fn intercept(&self, control_plane: SocketAddr) {
        let rules = format!(
            "*nat\n\
             :ISTIO_INBOUND - [0:0]\n\
             :ISTIO_IN_REDIRECT - [0:0]\n\
             :ISTIO_OUTPUT - [0:0]\n\
             :ISTIO_REDIRECT - [0:0]\n\
             -A PREROUTING -p tcp -j ISTIO_INBOUND\n\
             -A OUTPUT -p tcp -j ISTIO_OUTPUT\n\
             -A ISTIO_INBOUND -p tcp --dport 15000 -j RETURN\n\
             -A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT\n\
             -A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006\n\
             -A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001\n\
             -A ISTIO_OUTPUT -s 127.0.0.6/32 -o lo -j RETURN\n\
             -A ISTIO_OUTPUT ! -d 127.0.0.1/32 -o lo -p tcp -m owner --gid-owner {gid} -j ISTIO_IN_REDIRECT\n\
             -A ISTIO_OUTPUT -o lo -m owner ! --gid-owner {gid} -j RETURN\n\
             {outbound_exits}",
            gid = PROXY_GID,
            outbound_exits = outbound_exits(control_plane),
        );
        self.restore_rules(&rules);
    }

    /// istio-init's TPROXY rules: inbound TCP is diverted to 15006 by the mangle table's TPROXY
    /// target (the original destination stays on the socket), marked [`TPROXY_MARK`] and routed
    /// locally; connections Envoy makes with the client's address (`original_src`, same mark)
    /// get their replies routed back to Envoy through the connection mark. Outbound TCP is
    /// redirected to 15001 as in REDIRECT mode, except Envoy's own and loopback traffic and
    /// connections to the control plane at `control_plane`.
    pub fn intercept_tproxy(&self, control_plane: SocketAddr) {
        let mark = TPROXY_MARK;
        let table = TPROXY_MARK.to_string();
        let rules = format!(
            "*mangle\n\
             :ISTIO_INBOUND - [0:0]\n\
             :ISTIO_DIVERT - [0:0]\n\
             :ISTIO_TPROXY - [0:0]\n\
             -A PREROUTING -p tcp -j ISTIO_INBOUND\n\
             -A PREROUTING -p tcp -m mark --mark {mark} -j CONNMARK --save-mark\n\
             -A OUTPUT -p tcp -m connmark --mark {mark} -j CONNMARK --restore-mark\n\
             -A ISTIO_DIVERT -j MARK --set-mark {mark}\n\
             -A ISTIO_DIVERT -j ACCEPT\n\
             -A ISTIO_INBOUND -p tcp -m mark --mark {mark} -j RETURN\n\
             -A ISTIO_INBOUND -p tcp -s 127.0.0.6/32 -i lo -j RETURN\n\
             -A ISTIO_INBOUND -p tcp -i lo -m mark ! --mark {mark} -j RETURN\n\
             -A ISTIO_INBOUND -p tcp --dport 15000 -j RETURN\n\
             -A ISTIO_INBOUND -p tcp -m conntrack --ctstate RELATED,ESTABLISHED -j ISTIO_DIVERT\n\
             -A ISTIO_INBOUND -p tcp -j ISTIO_TPROXY\n\
             -A ISTIO_TPROXY ! -d 127.0.0.1/32 -p tcp -j TPROXY --on-port 15006 --on-ip 0.0.0.0 --tproxy-mark {mark}/0xffffffff\n\
             COMMIT\n\
             *nat\n\
             :ISTIO_OUTPUT - [0:0]\n\
             :ISTIO_REDIRECT - [0:0]\n\
             -A OUTPUT -p tcp -j ISTIO_OUTPUT\n\
             -A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001\n\
             -A ISTIO_OUTPUT -o lo -j RETURN\n\
             {outbound_exits}",
            outbound_exits = outbound_exits(control_plane),
        );
        self.restore_rules(&rules);
        // Marked packets are delivered locally, whatever their destination address.
        ip(&[
            "-n",
            &self.namespace,
            "rule",
            "add",
            "fwmark",
            &table,
            "lookup",
            &table,
        ]);
        ip(&[
            "-n",
            &self.namespace,
            "route",
            "add",
            "local",
            "0.0.0.0/0",
            "dev",
            "lo",
            "table",
            &table,
        ]);
    }

    /// How many packets the TPROXY rule of [`Pod::intercept_tproxy`] diverted to Envoy.
    pub fn tproxied_packets(&self) -> u64 {
        let listing = run(
            "ip",
            &[
                "netns",
                "exec",
                &self.namespace,
                "iptables",
                "-t",
                "mangle",
                "-n",
                "-v",
                "-x",
                "-L",
                "ISTIO_TPROXY",
            ],
            None,
        );
        listing
            .lines()
            .filter(|line| line.contains("TPROXY"))
            .filter_map(|line| line.split_whitespace().next()?.parse::<u64>().ok())
            .sum()
    }

    /// Starts a stock Envoy in the pod as group [`PROXY_GID`], from `bootstrap` (YAML, as
    /// `rudder bootstrap` prints it); its admin interface is on the pod's 127.0.0.1:15000.
    pub fn start_envoy(&mut self, envoy: &Path, bootstrap: &str) {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let config = dir.path().join("envoy.yaml");
        std::fs::write(&config, bootstrap).expect("write the bootstrap");
        let log = dir.path().join("envoy.log");
        let child = Command::new("ip")
            .args(["netns", "exec", &self.namespace, "setpriv"])
            .arg(format!("--regid={PROXY_GID}"))
            .args(["--clear-groups", "--"])
            .arg(envoy)
            .arg("-c")
            .arg(&config)
            .args([
                "--use-dynamic-base-id",
                "--log-level",
                "info",
                "--concurrency",
                "1",
            ])
            .arg("--log-path")
            .arg(&log)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start envoy in the pod");
        self.envoy = Some(Sidecar {
            child,
            log,
            _dir: dir,
        });
    }

    /// The sidecar's log so far, for failure messages.
    pub fn envoy_log(&self) -> String {
        self.envoy
            .as_ref()
            .and_then(|sidecar| std::fs::read_to_string(&sidecar.log).ok())
            .unwrap_or_default()
    }

    /// A plain HTTP/1.1 GET from inside the pod, to `address` (`IP:PORT`) with `Host: host`.
    pub fn http_get(
        &self,
        address: &str,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<HttpReply, String> {
        let mut request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        let response = self.exchange(address, request.into_bytes())?;
        let (head, body) = response
            .split_once("\r\n\r\n")
            .ok_or_else(|| format!("not an HTTP response: {response:?}"))?;
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| format!("no status in {head:?}"))?;
        Ok(HttpReply {
            status,
            body: body.to_string(),
        })
    }

    /// Connects from inside the pod to `address`, sends `bytes`, and reads until the peer closes.
    pub fn exchange(&self, address: &str, bytes: Vec<u8>) -> Result<String, String> {
        let address: SocketAddr = address.parse().map_err(|e| format!("{address}: {e}"))?;
        in_namespace(&self.namespace, move || {
            let timeout = Duration::from_secs(5);
            let mut stream = TcpStream::connect_timeout(&address, timeout)
                .map_err(|e| format!("connect {address}: {e}"))?;
            stream
                .set_read_timeout(Some(timeout))
                .map_err(|e| e.to_string())?;
            stream.write_all(&bytes).map_err(|e| e.to_string())?;
            let mut response = Vec::new();
            stream
                .read_to_end(&mut response)
                .map_err(|e| format!("read from {address}: {e}"))?;
            Ok(String::from_utf8_lossy(&response).into_owned())
        })
    }

    /// A counter from the sidecar's admin stats (0 when absent).
    pub fn envoy_stat(&self, name: &str) -> u64 {
        let reply = self.http_get("127.0.0.1:15000", "admin", "/stats", &[]);
        reply
            .ok()
            .and_then(|reply| {
                reply.body.lines().find_map(|line| {
                    let (stat, value) = line.split_once(": ")?;
                    (stat == name).then(|| value.trim().parse().ok()).flatten()
                })
            })
            .unwrap_or(0)
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        if let Some(sidecar) = &mut self.envoy {
            let _ = sidecar.child.kill();
            let _ = sidecar.child.wait();
        }
        for table in ["nat", "mangle"] {
            let _ = Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &self.namespace,
                    "iptables",
                    "-t",
                    table,
                    "-F",
                ])
                .output();
        }
        delete_namespace(&self.namespace);
    }
}
