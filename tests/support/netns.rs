//! Test hosts: network namespaces this test run creates, joined to the host by a veth pair on a
//! /24 of their own (`10.231.N.0/24`: the host side is `.1`, the namespace answers on `.2` and on
//! any address added with [`TestHost::add_address`]). They give upstreams addresses that are not
//! loopback, which Kubernetes requires of EndpointSlices, and clients a source address that is
//! not loopback ([`TestHost::connect`]), while traffic stays on this machine.
//! Needs root and iproute2; everything is removed when the guard is dropped.

use std::net::TcpListener;
use std::os::fd::AsFd;
use std::process::Command;

pub struct TestHost {
    namespace: String,
    host_link: String,
    subnet: u8,
}

fn ip(args: &[&str]) {
    let output = Command::new("ip")
        .args(args)
        .output()
        .expect("run ip (install iproute2)");
    assert!(
        output.status.success(),
        "ip {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

impl TestHost {
    /// Creates the namespace and its link; `subnet` picks `10.231.<subnet>.0/24` and must be
    /// unique among tests running at once.
    pub fn create(subnet: u8) -> TestHost {
        let tag = format!("{}{subnet}", std::process::id() % 100_000);
        let host = TestHost {
            namespace: format!("rudder-{tag}"),
            host_link: format!("rh{tag}"),
            subnet,
        };
        let peer = format!("rn{tag}");
        let host_address = format!("10.231.{subnet}.1/24");
        // A run that was killed leaves its namespace behind; process ids repeat across runs here.
        let _ = Command::new("ip")
            .args(["netns", "del", &host.namespace])
            .output();
        let _ = Command::new("ip")
            .args(["link", "del", &host.host_link])
            .output();
        ip(&["netns", "add", &host.namespace]);
        ip(&[
            "link",
            "add",
            &host.host_link,
            "type",
            "veth",
            "peer",
            "name",
            &peer,
            "netns",
            &host.namespace,
        ]);
        ip(&["addr", "add", &host_address, "dev", &host.host_link]);
        ip(&["link", "set", &host.host_link, "up"]);
        ip(&["-n", &host.namespace, "link", "set", "lo", "up"]);
        ip(&["-n", &host.namespace, "link", "set", &peer, "up"]);
        host.add_address(2);
        host
    }

    /// The `<subnet>` of `10.231.<subnet>.0/24`.
    pub fn subnet(&self) -> u8 {
        self.subnet
    }

    /// `10.231.<subnet>.<last>`.
    pub fn address(&self, last: u8) -> String {
        format!("10.231.{}.{last}", self.subnet)
    }

    /// Makes the namespace answer on `10.231.<subnet>.<last>` too.
    pub fn add_address(&self, last: u8) {
        let address = format!("{}/24", self.address(last));
        let peer = format!("rn{}", &self.host_link[2..]);
        ip(&["-n", &self.namespace, "addr", "add", &address, "dev", &peer]);
    }

    /// A socket listening on `address` inside the namespace. Sockets belong to the namespace they
    /// were created in, so a thread joins it, binds, and hands the socket back.
    pub fn bind(&self, address: &str) -> TcpListener {
        let path = format!("/var/run/netns/{}", self.namespace);
        let address = address.to_string();
        std::thread::spawn(move || {
            let namespace = std::fs::File::open(&path).expect("open the network namespace");
            nix::sched::setns(namespace.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
                .expect("join the network namespace");
            TcpListener::bind(&address)
                .unwrap_or_else(|error| panic!("bind {address} in the test host: {error}"))
        })
        .join()
        .expect("the binding thread")
    }

    /// A TCP connection to `address` opened from inside the namespace: its source is the
    /// namespace's address, not loopback.
    pub fn connect(&self, address: &str) -> std::net::TcpStream {
        let path = format!("/var/run/netns/{}", self.namespace);
        let address = address.to_string();
        std::thread::spawn(move || {
            let namespace = std::fs::File::open(&path).expect("open the network namespace");
            nix::sched::setns(namespace.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
                .expect("join the network namespace");
            std::net::TcpStream::connect(&address)
                .unwrap_or_else(|error| panic!("connect to {address} from the test host: {error}"))
        })
        .join()
        .expect("the connecting thread")
    }
}

impl Drop for TestHost {
    fn drop(&mut self) {
        // Deleting the namespace deletes its end of the veth, and with it the host's end.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.namespace])
            .output();
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_link])
            .output();
    }
}
