//! The `rudder` command line: `serve`, `validate`, `bootstrap`, `translate`, `proxy-status` and
//! `demo-backends`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use rudder::address::{parse_connect_address, parse_listen_address};
use rudder::admin::auth::DebugAuth;
use rudder::admin::{AdminOptions, HttpTimeouts};
use rudder::bootstrap::{
    AdsApiType, BootstrapOptions, ClientCertificate, XdsClientTls, bootstrap_json, node_metadata,
    parse_label,
};
use rudder::diagnostic::ConfigError;
use rudder::envoy_json::config_dump;
use rudder::logging::{LogFormat, log_filter};
use rudder::model::{LastGood, UnknownReferences, build, build_with, has_registry};
use rudder::proxy::SecretAccess;
use rudder::proxy_status;
use rudder::serve::{KubeConnection, KubernetesOptions, ServeOptions, Server, kubeconfig};
use rudder::source::file::load_dirs;
use rudder::source::kube::NamespaceFilter;
use rudder::translate::translate;
use rudder::xds::auth::{NamedReaders, ServiceAccount, XdsAuth};
use rudder::xds::node;
use rudder::xds::{
    DEFAULT_MAX_REQUEST_SIZE, DEFAULT_MAX_STREAMS_PER_CONNECTION, DEFAULT_MAX_SUBSCRIBED_NAMES,
    DEFAULT_MAX_UNFINISHED_REQUEST_BYTES, StreamRate, TlsFiles, XdsOptions, XdsTls,
};

/// How long, after the servers stopped, what is left of the runtime may take to end.
const RUNTIME_SHUTDOWN: std::time::Duration = std::time::Duration::from_secs(1);

#[derive(Parser)]
#[command(
    name = "rudder",
    version,
    about = "An Istio-compatible Envoy control plane"
)]
struct Cli {
    /// Log level (error, warn, info, debug, trace) or a tracing filter such as
    /// `info,rudder::xds=debug`. RUST_LOG, when set, wins.
    #[arg(long, global = true, default_value = "info")]
    log_level: String,
    /// Log lines as text, or as one JSON object each (timestamp, level, target, message and
    /// fields). Colour codes only when stderr is a terminal and NO_COLOR is unset.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
// Parsed once at startup: the size of `Serve`'s flags costs nothing worth boxing them for.
#[allow(clippy::large_enum_variant)]
enum Command {
    /// Serve Istio config from YAML directories and/or a Kubernetes cluster to Envoy over ADS.
    #[command(
        after_help = "Examples:\n  rudder serve --config-dir examples/bookinfo --xds-address 127.0.0.1:15010\n  \
        rudder serve --kubeconfig ~/.kube/config --namespace-selector istio-discovery=enabled"
    )]
    Serve {
        /// A directory of YAML/JSON config, read recursively and followed for changes (repeatable).
        #[arg(long = "config-dir")]
        config_dirs: Vec<PathBuf>,
        /// A config file written in place applies once it stayed unchanged this long, so a file
        /// is never applied half-written; files renamed into place and ConfigMap volume updates
        /// apply at once. One still changing after --debounce-max is reported and keeps its last
        /// good objects (Go duration syntax; 250ms is the delay istiod's file watcher waits).
        #[arg(long, default_value = "250ms")]
        file_quiet_period: rudder::duration::Duration,
        /// Watch the Kubernetes API server this kubeconfig points at. Without --config-dir,
        /// --kubeconfig or --in-cluster, rudder watches the cluster kubectl would: the files in
        /// KUBECONFIG (merged as kubectl merges them), else ~/.kube/config.
        #[arg(long, conflicts_with = "in_cluster")]
        kubeconfig: Option<PathBuf>,
        /// Watch the Kubernetes API server of the cluster rudder runs in (service account).
        #[arg(long)]
        in_cluster: bool,
        /// Read only these namespaces (comma-separated or repeated); meshConfig discoverySelectors
        /// narrow what these flags allow further.
        #[arg(long, value_delimiter = ',')]
        namespaces: Vec<String>,
        /// Read only namespaces whose labels match this selector (kubectl syntax), besides --namespaces.
        #[arg(long)]
        namespace_selector: Option<String>,
        /// Namespace of the Lease that elects the replica writing object statuses.
        #[arg(long, env = "POD_NAMESPACE", default_value = "istio-system")]
        lease_namespace: String,
        /// Where ADS (gRPC, state of the world and delta) listens: IP:PORT, or :PORT for every
        /// interface.
        #[arg(long, default_value = "0.0.0.0:15010", value_parser = listen_address)]
        xds_address: SocketAddr,
        /// Where /ready, /metrics and /debug/* listen (IP:PORT, or :PORT for every interface).
        /// /ready and /metrics answer anyone; /debug/* answers loopback callers, and others only
        /// with a bearer token.
        #[arg(long, default_value = "0.0.0.0:15014", value_parser = listen_address)]
        admin_address: SocketAddr,
        /// A file holding a token that lets callers from other hosts read /debug/* with
        /// `Authorization: Bearer TOKEN`; re-read when it changes. Without it, /debug/* answers
        /// loopback callers only.
        #[arg(long, value_name = "FILE")]
        debug_token_file: Option<PathBuf>,
        /// How many /debug requests do their work (translation, JSON) at once, on threads apart
        /// from the ones serving xDS and /ready.
        #[arg(long, default_value_t = rudder::admin::DEFAULT_DEBUG_CONCURRENCY as u32, value_parser = clap::value_parser!(u32).range(1..))]
        debug_concurrency: u32,
        /// How long a /debug request waits for one of the --debug-concurrency slots before it is
        /// answered 503 with Retry-After (Go duration syntax).
        #[arg(long, default_value = "1s")]
        debug_queue_timeout: rudder::duration::Duration,
        /// Close an admin connection whose request has not arrived whole this long after the
        /// connection opened, or after the request's first byte (istiod's monitoring server:
        /// 30s).
        #[arg(long, default_value = "30s")]
        admin_read_timeout: rudder::duration::Duration,
        /// Close a kept-alive admin connection that sends and receives nothing for this long
        /// (istiod's monitoring server: 90s).
        #[arg(long, default_value = "90s")]
        admin_idle_timeout: rudder::duration::Duration,
        /// Close xDS streams older than this (Go duration syntax) so proxies rebalance across replicas.
        #[arg(long, default_value = "30m")]
        max_connection_age: rudder::duration::Duration,
        /// Close the connection of a proxy that leaves a response unsent this long because it
        /// does not read (Go duration syntax; istiod's PILOT_XDS_SEND_TIMEOUT). 0s: no limit but
        /// --max-connection-age.
        #[arg(long, env = "PILOT_XDS_SEND_TIMEOUT", default_value = "0s")]
        xds_send_timeout: rudder::duration::Duration,
        /// Rebuild once config changes have been quiet this long (Go duration syntax; istiod's
        /// PILOT_DEBOUNCE_AFTER).
        #[arg(long, env = "PILOT_DEBOUNCE_AFTER", default_value = "100ms")]
        debounce_after: rudder::duration::Duration,
        /// Rebuild at the latest this long after the first change waiting (istiod's
        /// PILOT_DEBOUNCE_MAX).
        #[arg(long, env = "PILOT_DEBOUNCE_MAX", default_value = "10s")]
        debounce_max: rudder::duration::Duration,
        /// How many proxies prepare a push at once (istiod's PILOT_PUSH_THROTTLE).
        #[arg(long, env = "PILOT_PUSH_THROTTLE", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
        push_throttle: u32,
        /// meshConfig.rootNamespace: its Sidecar without a workloadSelector is the default for
        /// every namespace without one of its own; its exported DestinationRules apply mesh-wide.
        #[arg(long, env = "ROOT_NAMESPACE", default_value = rudder::model::DEFAULT_ROOT_NAMESPACE)]
        root_namespace: String,
        /// The DNS suffix of Kubernetes services, NAME.NAMESPACE.svc.DOMAIN (istiod's --domain).
        #[arg(long, default_value = rudder::model::DEFAULT_DNS_DOMAIN)]
        domain: String,
        /// A mesh config file (the `mesh` key of istiod's `istio` ConfigMap; istiod's
        /// --meshConfig), followed as it changes. Without it, rudder watching a cluster reads the
        /// `istio` ConfigMap of the control-plane namespace (--lease-namespace, $POD_NAMESPACE).
        #[arg(long, value_name = "FILE")]
        mesh_config: Option<PathBuf>,
        /// Serve xDS over TLS with this certificate chain (PEM), like istiod's 15012. Re-read
        /// when the file changes.
        #[arg(long, value_name = "FILE", requires = "xds_tls_key")]
        xds_tls_cert: Option<PathBuf>,
        /// The private key (PEM) of --xds-tls-cert.
        #[arg(long, value_name = "FILE", requires = "xds_tls_cert")]
        xds_tls_key: Option<PathBuf>,
        /// Require xDS clients to present a certificate signed by these CAs (PEM): mutual TLS.
        #[arg(long, value_name = "FILE", requires = "xds_tls_cert")]
        xds_tls_client_ca: Option<PathBuf>,
        /// A service account (NAMESPACE/NAME, repeatable or comma-separated) allowed to be sent
        /// the certificates and keys of its namespace's Secrets (gateway credentials) over SDS,
        /// once its proxy proved that identity (mutual TLS with a SPIFFE certificate, or a
        /// token). With Kubernetes, service accounts that RBAC lets list Secrets in their
        /// namespace are allowed too (SubjectAccessReview, as istiod does).
        #[arg(
            long = "credential-reader",
            value_name = "NAMESPACE/NAME",
            value_delimiter = ','
        )]
        credential_readers: Vec<ServiceAccount>,
        /// The trust domain of identities proven by a service account token (meshConfig.trustDomain).
        #[arg(long, env = "TRUST_DOMAIN", default_value = "cluster.local")]
        trust_domain: String,
        /// On SIGTERM or Ctrl-C, how long open connections get to close before rudder exits
        /// (Go duration syntax).
        #[arg(long, default_value = "5s")]
        shutdown_grace: rudder::duration::Duration,
        /// Bounds on what xDS clients may make rudder hold.
        #[command(flatten)]
        xds_limits: Box<XdsLimits>,
    },
    /// Check config files or directories, as `serve` reads them: print one line per problem,
    /// `FILE:LINE: Kind namespace/name: field: message`, warnings with `warning: ` before the
    /// message.
    #[command(
        after_help = "Exit status: 0 when there is no error (warnings, such as settings or kinds rudder \
        does not translate, are printed only); 1 when any problem is an error; 2 for a command-line \
        mistake; 3 when there are warnings but no error and --fail-on-warnings is given.\n\n\
        Without any Service or ServiceEntry among PATHS, rules are checked alone, as \
        `istioctl validate` checks them: a destination that refers to no known service or \
        subset is a warning instead of an error.\n\n\
        Example:\n  rudder validate examples/bookinfo my-rules.yaml"
    )]
    Validate {
        /// Files or directories.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Exit 3 when there are warnings and no error (errors exit 1 still).
        #[arg(long)]
        fail_on_warnings: bool,
    },
    /// Print an Envoy bootstrap (YAML) that connects a stock Envoy to rudder.
    #[command(
        after_help = "Example:\n  rudder bootstrap --node-id sidecar~127.0.0.1~productpage-v1.bookinfo~bookinfo.svc.cluster.local \\\n    --xds-address 127.0.0.1:15010 --metadata '{\"INTERCEPTION_MODE\":\"NONE\"}' > envoy.yaml\n  envoy -c envoy.yaml\n\nAn ingress gateway (picked by Gateways selecting istio=ingressgateway):\n  rudder bootstrap --node-id router~127.0.0.1~ingress-xyz.istio-system~istio-system.svc.cluster.local \\\n    --xds-address 127.0.0.1:15010 --namespace istio-system --label istio=ingressgateway > gateway.yaml"
    )]
    Bootstrap {
        /// Istio node id: TYPE~IP~POD.NAMESPACE~NAMESPACE.svc.cluster.local
        #[arg(long)]
        node_id: String,
        /// rudder's xDS address, HOST:PORT (:PORT is this host, 127.0.0.1).
        #[arg(long, default_value = "istiod.istio-system.svc:15010", value_parser = connect_address)]
        xds_address: String,
        /// Node metadata as a JSON object (NAMESPACE, LABELS, INTERCEPTION_MODE, ...).
        #[arg(long)]
        metadata: Option<String>,
        /// The proxy's namespace (metadata NAMESPACE); wins over --metadata.
        #[arg(long)]
        namespace: Option<String>,
        /// A label of the proxy, KEY=VALUE (repeatable; metadata LABELS, which Gateway selectors
        /// match); wins over the same label in --metadata.
        #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label_flag)]
        labels: Vec<(String, String)>,
        /// Envoy's admin address (IP:PORT, or :PORT for every interface).
        #[arg(long, default_value = "127.0.0.1:15000", value_parser = listen_address)]
        admin_address: SocketAddr,
        /// Use delta xDS (`DELTA_GRPC`, Istio's default) instead of state of the world.
        #[arg(long)]
        delta: bool,
        /// Reach rudder over TLS, trusting the CA certificates in this file (PEM), as Envoy
        /// reads it.
        #[arg(long, value_name = "FILE")]
        xds_tls_ca: Option<String>,
        /// Envoy's client certificate (PEM) for rudder's mutual TLS.
        #[arg(long, value_name = "FILE", requires_all = ["xds_tls_ca", "xds_tls_key"])]
        xds_tls_cert: Option<String>,
        /// The private key (PEM) of --xds-tls-cert.
        #[arg(long, value_name = "FILE", requires = "xds_tls_cert")]
        xds_tls_key: Option<String>,
        /// The DNS name rudder's certificate must carry, also sent as SNI (default: the host of
        /// --xds-address when it is a name).
        #[arg(long, value_name = "NAME", requires = "xds_tls_ca")]
        xds_tls_server_name: Option<String>,
        /// An Envoy access log service (gRPC, HOST:PORT) for the `envoy_accesslog_service`
        /// cluster that meshConfig `enableEnvoyAccessLogService` logs to, as istio-agent adds
        /// it from ProxyConfig `envoyAccessLogService`.
        #[arg(long, value_name = "HOST:PORT")]
        access_log_service: Option<String>,
    },
    /// Print the resources one proxy gets, as JSON in the shape of Envoy's config_dump.
    #[command(
        after_help = "Example:\n  rudder translate --config-dir examples/bookinfo \\\n    --node-id sidecar~127.0.10.1~productpage-v1.bookinfo~bookinfo.svc.cluster.local"
    )]
    Translate {
        /// A config directory (repeatable).
        #[arg(long = "config-dir", required = true)]
        config_dirs: Vec<PathBuf>,
        /// Istio node id of the proxy.
        #[arg(long)]
        node_id: String,
        /// Node metadata as a JSON object.
        #[arg(long)]
        metadata: Option<String>,
        /// meshConfig.rootNamespace: its Sidecar without a workloadSelector is the default for
        /// every namespace without one of its own; its exported DestinationRules apply mesh-wide.
        #[arg(long, env = "ROOT_NAMESPACE", default_value = rudder::model::DEFAULT_ROOT_NAMESPACE)]
        root_namespace: String,
        /// The DNS suffix of Kubernetes services (istiod's --domain).
        #[arg(long, default_value = rudder::model::DEFAULT_DNS_DOMAIN)]
        domain: String,
        /// A mesh config file (the `mesh` key of istiod's `istio` ConfigMap).
        #[arg(long, value_name = "FILE")]
        mesh_config: Option<PathBuf>,
    },
    /// Show the sync state of every proxy connected to a running rudder, like `istioctl proxy-status`.
    #[command(
        after_help = "Each type is SYNCED (the proxy ACKed the last version sent), STALE (sent, not ACKed yet),\n\
        NOT SENT, or ERROR (the proxy rejected it; Envoy's message follows the row).\n\n\
        With several replicas (--admin-address repeated, or found with --kubeconfig / --in-cluster\n\
        as the ready endpoints of rudder's Service), their streams are merged and an ISTIOD column\n\
        names each row's replica.\n\n\
        Example:\n  rudder proxy-status --admin-address 127.0.0.1:15014"
    )]
    ProxyStatus {
        /// rudder's admin address (HOST:PORT, :PORT for this host, or a URL), where
        /// /debug/streamz is served; repeat it for several replicas. From the loopback address no token is needed.
        #[arg(long, default_value = "127.0.0.1:15014", value_parser = admin_url_or_address)]
        admin_address: Vec<String>,
        /// Ask every ready replica behind --service, found with this kubeconfig (their Pod
        /// addresses must be reachable from here; give --token-file unless on their host).
        #[arg(long, conflicts_with = "in_cluster")]
        kubeconfig: Option<PathBuf>,
        /// Ask every ready replica behind --service, found with the Pod's service account.
        #[arg(long)]
        in_cluster: bool,
        /// rudder's Service (NAMESPACE/NAME) whose ready endpoints are the replicas.
        #[arg(long, default_value = "istio-system/istiod-rudder")]
        service: String,
        /// Send the token in this file (rudder's --debug-token-file) as `Authorization: Bearer`.
        #[arg(long, value_name = "FILE")]
        token_file: Option<PathBuf>,
    },
    /// Stand-in workloads for a config directory: an HTTP server on every endpoint address of
    /// its services, answering each request with the service, version and Pod it stands for.
    #[command(
        after_help = "Example (the README's quickstart):\n  rudder demo-backends --config-dir examples/bookinfo"
    )]
    DemoBackends {
        /// A config directory (repeatable).
        #[arg(long = "config-dir", required = true)]
        config_dirs: Vec<PathBuf>,
    },
}

/// `rudder serve`'s bounds on what xDS clients may make rudder hold (README: Limits on the xDS
/// port).
#[derive(clap::Args)]
struct XdsLimits {
    /// The largest ADS request accepted, in bytes (istiod's ISTIO_GPRC_MAXRECVMSGSIZE): a
    /// larger one ends its stream with RESOURCE_EXHAUSTED. Responses are not bound by it.
    #[arg(long, env = "ISTIO_GPRC_MAXRECVMSGSIZE", default_value_t = DEFAULT_MAX_REQUEST_SIZE, value_parser = positive_usize)]
    xds_max_message_size: usize,
    /// Bytes of ADS requests received but not yet whole that all streams together may hold; a
    /// stream whose next bytes do not fit ends with RESOURCE_EXHAUSTED. Without it, streams
    /// each holding an unfinished request just under --xds-max-message-size add up without
    /// bound.
    #[arg(long, default_value_t = DEFAULT_MAX_UNFINISHED_REQUEST_BYTES, value_parser = positive_usize)]
    xds_max_unfinished_request_bytes: usize,
    /// HTTP/2 streams one xDS connection may have open at once; HTTP/2 refuses more (istiod's
    /// ISTIO_GPRC_MAXSTREAMS, whose default is 100000; Envoy opens one ADS stream per
    /// connection).
    #[arg(long, env = "ISTIO_GPRC_MAXSTREAMS", default_value_t = DEFAULT_MAX_STREAMS_PER_CONNECTION, value_parser = clap::value_parser!(u32).range(1..))]
    xds_max_streams_per_connection: u32,
    /// End an ADS stream whose first request has not arrived this long after it opened
    /// (DEADLINE_EXCEEDED; Go duration syntax).
    #[arg(long, default_value = "10s", value_parser = positive_duration)]
    xds_first_request_timeout: rudder::duration::Duration,
    /// Close an xDS connection that has not completed TLS (with --xds-tls-cert) and sent the
    /// HTTP/2 preface this long after it connected (Go duration syntax).
    #[arg(long, default_value = "10s", value_parser = positive_duration)]
    xds_handshake_timeout: rudder::duration::Duration,
    /// Ping each xDS connection this often (Go duration syntax; istiod's
    /// GRPC_KEEPALIVE_INTERVAL).
    #[arg(long, env = "GRPC_KEEPALIVE_INTERVAL", default_value = "30s", value_parser = positive_duration)]
    xds_keepalive_interval: rudder::duration::Duration,
    /// Close an xDS connection whose ping is not answered within this (istiod's
    /// GRPC_KEEPALIVE_TIMEOUT).
    #[arg(long, env = "GRPC_KEEPALIVE_TIMEOUT", default_value = "10s", value_parser = positive_duration)]
    xds_keepalive_timeout: rudder::duration::Duration,
    /// New ADS streams per second (istiod's PILOT_MAX_REQUESTS_PER_SECOND): a new stream
    /// waits up to 1s for its turn, else ends with RESOURCE_EXHAUSTED and Envoy retries.
    /// `auto` or 0: istiod's default, 15 + 5 per CPU, at most 100; `off`: no limit.
    #[arg(long, env = "PILOT_MAX_REQUESTS_PER_SECOND", default_value = "auto", value_parser = parse_stream_rate)]
    xds_max_streams_per_second: NewStreams,
    /// The names one ADS stream may subscribe to (EDS, RDS, SDS), all types together: a
    /// request past it ends the stream with RESOURCE_EXHAUSTED.
    #[arg(long, default_value_t = DEFAULT_MAX_SUBSCRIBED_NAMES, value_parser = positive_usize)]
    xds_max_subscribed_names: usize,
}

impl XdsLimits {
    /// `options` with these bounds.
    fn apply(self, options: XdsOptions) -> XdsOptions {
        XdsOptions {
            max_request_size: self.xds_max_message_size,
            max_unfinished_request_bytes: self.xds_max_unfinished_request_bytes,
            max_streams_per_connection: self.xds_max_streams_per_connection,
            first_request_timeout: self.xds_first_request_timeout.0,
            handshake_timeout: self.xds_handshake_timeout.0,
            keepalive_interval: self.xds_keepalive_interval.0,
            keepalive_timeout: self.xds_keepalive_timeout.0,
            stream_rate: self.xds_max_streams_per_second.0,
            max_subscribed_names: self.xds_max_subscribed_names,
            ..options
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = match log_filter(std::env::var("RUST_LOG").ok().as_deref(), &cli.log_level) {
        Ok(filter) => filter,
        Err(error) => {
            eprintln!("rudder: {error:#}");
            return ExitCode::from(2);
        }
    };
    rudder::logging::init(filter, cli.log_format);
    match run(cli.command) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("rudder: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve {
            config_dirs,
            file_quiet_period,
            kubeconfig,
            in_cluster,
            namespaces,
            namespace_selector,
            lease_namespace,
            xds_address,
            admin_address,
            debug_token_file,
            debug_concurrency,
            debug_queue_timeout,
            admin_read_timeout,
            admin_idle_timeout,
            max_connection_age,
            xds_send_timeout,
            debounce_after,
            debounce_max,
            push_throttle,
            root_namespace,
            domain,
            mesh_config,
            xds_tls_cert,
            xds_tls_key,
            xds_tls_client_ca,
            credential_readers,
            trust_domain,
            shutdown_grace,
            xds_limits,
        } => {
            raise_open_files_limit();
            let tls = match (xds_tls_cert, xds_tls_key) {
                (Some(certificate), Some(private_key)) => Some(
                    XdsTls::load(TlsFiles {
                        certificate,
                        private_key,
                        client_ca: xds_tls_client_ca,
                    })
                    .context("xDS TLS")?,
                ),
                _ => None,
            };
            anyhow::ensure!(
                !admin_read_timeout.is_zero() && !admin_idle_timeout.is_zero(),
                "--admin-read-timeout and --admin-idle-timeout must be more than 0s"
            );
            let mut debug_auth = DebugAuth::new(root_namespace.clone());
            if let Some(path) = debug_token_file {
                debug_auth = debug_auth.with_token_file(path)?;
            }
            let admin = AdminOptions {
                auth: Arc::new(debug_auth),
                debug_concurrency: debug_concurrency as usize,
                debug_queue_timeout: debug_queue_timeout.0,
                timeouts: HttpTimeouts {
                    read: admin_read_timeout.0,
                    idle: admin_idle_timeout.0,
                },
            };
            let connection = match (kubeconfig, in_cluster) {
                (Some(path), _) => Some(KubeConnection::Kubeconfig(path)),
                (None, true) => Some(KubeConnection::InCluster),
                // No source named at all: the cluster kubectl would talk to, if there is one.
                (None, false)
                    if config_dirs.is_empty() && kubeconfig::default_kubeconfig_exists() =>
                {
                    Some(KubeConnection::Default)
                }
                (None, false) => None,
            };
            let kubernetes = connection.map(|connection| KubernetesOptions {
                connection,
                namespaces: NamespaceFilter {
                    names: namespaces.into_iter().collect(),
                    selector: namespace_selector,
                },
                control_plane_namespace: lease_namespace.clone(),
                lease_namespace,
            });
            let runtime = tokio::runtime::Runtime::new().context("start the async runtime")?;
            let served = runtime.block_on(async {
                // Listening for signals from the start, so that one during startup is not fatal.
                let signal = shutdown_signal()?;
                let server = Server::start(ServeOptions {
                    config_dirs,
                    file_quiet_period: file_quiet_period.0,
                    kubernetes,
                    debounce: rudder::serve::Debounce {
                        quiet: debounce_after.0,
                        max: debounce_max.0,
                    },
                    xds_address,
                    admin_address,
                    admin,
                    xds: xds_limits.apply(XdsOptions {
                        max_connection_age: max_connection_age.0,
                        push_concurrency: push_throttle as usize,
                        tls,
                        send_timeout: (!xds_send_timeout.is_zero()).then_some(xds_send_timeout.0),
                        auth: XdsAuth {
                            tokens: None,
                            readers: vec![Arc::new(NamedReaders(
                                credential_readers.into_iter().collect(),
                            ))],
                            trust_domain,
                        },
                        ..XdsOptions::default()
                    }),
                    root_namespace,
                    dns_domain: domain,
                    mesh_config_file: mesh_config,
                })
                .await?;
                server.run_until(signal, shutdown_grace.0).await
            });
            // Tasks that do not end when cancelled (blocking file watching) must not hold the
            // exit up.
            runtime.shutdown_timeout(RUNTIME_SHUTDOWN);
            served?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Validate {
            paths,
            fail_on_warnings,
        } => {
            let inputs = load_dirs(&paths).inputs();
            let unknown_references = if has_registry(&inputs) {
                UnknownReferences::Refuse
            } else {
                eprintln!(
                    "rudder: no Service or ServiceEntry given: rules are checked alone, and \
                     destinations that refer to no known service or subset are warnings"
                );
                UnknownReferences::Warn
            };
            let settings = rudder::model::Settings {
                unknown_references,
                ..rudder::model::Settings::default()
            };
            let built = build_with(&inputs, &LastGood::default(), &settings);
            for error in &built.errors {
                println!("{error}");
            }
            Ok(validate_exit_code(&built.errors, fail_on_warnings))
        }
        Command::Bootstrap {
            node_id,
            xds_address,
            metadata,
            namespace,
            labels,
            admin_address,
            delta,
            xds_tls_ca,
            xds_tls_cert,
            xds_tls_key,
            xds_tls_server_name,
            access_log_service,
        } => {
            let metadata = node_metadata(
                parse_metadata(metadata.as_deref())?,
                namespace.as_deref(),
                &labels,
            )?;
            node::parse(&node_id, &metadata)?;
            let client_certificate =
                xds_tls_cert
                    .zip(xds_tls_key)
                    .map(|(certificate_file, private_key_file)| ClientCertificate {
                        certificate_file,
                        private_key_file,
                    });
            let json = bootstrap_json(&BootstrapOptions {
                node_id,
                xds_address,
                metadata,
                admin_address,
                api_type: if delta {
                    AdsApiType::DeltaGrpc
                } else {
                    AdsApiType::Grpc
                },
                xds_tls: xds_tls_ca.map(|ca_file| XdsClientTls {
                    ca_file,
                    client_certificate,
                    server_name: xds_tls_server_name,
                }),
                access_log_service,
            })?;
            print!(
                "{}",
                serde_saphyr::to_string(&json).context("render the bootstrap as YAML")?
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Translate {
            config_dirs,
            node_id,
            metadata,
            root_namespace,
            domain,
            mesh_config,
        } => {
            let metadata = parse_metadata(metadata.as_deref())?;
            let mut inputs = load_dirs(&config_dirs).inputs();
            if let Some(path) = mesh_config {
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("read --mesh-config {}", path.display()))?;
                inputs.mesh_config = Some(rudder::inputs::MeshConfigText {
                    origin: rudder::diagnostic::Origin::File { path, line: 1 },
                    holder: String::new(),
                    mesh: Some(text),
                    networks: None,
                });
            }
            let settings = rudder::model::Settings {
                dns_domain: domain,
                mesh_defaults: rudder::mesh_config::MeshConfig::with_root_namespace(
                    &root_namespace,
                ),
                ..rudder::model::Settings::default()
            };
            let built = rudder::model::build_with(&inputs, &LastGood::default(), &settings);
            for error in &built.errors {
                eprintln!("{error}");
            }
            let mut proxy = node::parse(&node_id, &metadata)?.with_workload_labels(&built.model);
            // Whoever runs this reads the Secrets' files already: show what a gateway allowed to
            // read them gets (private keys are redacted in the dump).
            proxy.secret_access = SecretAccess::All;
            let resources = translate(&built.model, &proxy);
            let dump = config_dump(&resources, |_| String::new())?;
            println!("{}", serde_json::to_string_pretty(&dump)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::ProxyStatus {
            admin_address,
            kubeconfig,
            in_cluster,
            service,
            token_file,
        } => {
            let token = token_file
                .map(|path| {
                    std::fs::read_to_string(&path)
                        .map(|token| token.trim().to_string())
                        .with_context(|| format!("read --token-file {}", path.display()))
                })
                .transpose()?;
            let runtime = tokio::runtime::Runtime::new().context("start the async runtime")?;
            let connection = match (kubeconfig, in_cluster) {
                (Some(path), _) => Some(KubeConnection::Kubeconfig(path)),
                (None, true) => Some(KubeConnection::InCluster),
                (None, false) => None,
            };
            let replicas = match connection {
                Some(connection) => {
                    let (namespace, name) = service
                        .split_once('/')
                        .context("--service is NAMESPACE/NAME")?;
                    runtime.block_on(async {
                        let client = connection.client().await?;
                        proxy_status::replicas(client, namespace, name).await
                    })?
                }
                None => admin_address
                    .into_iter()
                    .map(proxy_status::Replica::at)
                    .collect(),
            };
            let (read, failed) =
                runtime.block_on(proxy_status::fetch_replicas(replicas, token.as_deref()));
            for (name, error) in &failed {
                eprintln!("replica {name}: {error:#}");
            }
            print!("{}", proxy_status::render_replicas(&read));
            Ok(if failed.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::DemoBackends { config_dirs } => {
            let built = build(&load_dirs(&config_dirs).inputs(), &LastGood::default());
            for error in &built.errors {
                eprintln!("{error}");
            }
            let backends = rudder::demo::backends(&built.model);
            let runtime = tokio::runtime::Runtime::new().context("start the async runtime")?;
            runtime.block_on(rudder::demo::serve_backends(backends))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `rudder validate`'s exit status (see its `--help`): 1 for any error; 3 for warnings only
/// with `--fail-on-warnings`; else 0.
fn validate_exit_code(problems: &[ConfigError], fail_on_warnings: bool) -> ExitCode {
    if problems.iter().any(|problem| !problem.is_warning()) {
        ExitCode::FAILURE
    } else if fail_on_warnings && !problems.is_empty() {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    }
}

fn listen_address(text: &str) -> Result<SocketAddr, String> {
    parse_listen_address(text).map_err(|error| error.to_string())
}

fn connect_address(text: &str) -> Result<String, String> {
    parse_connect_address(text).map_err(|error| error.to_string())
}

/// `rudder proxy-status --admin-address`: a URL as it is, else an address to connect to.
fn admin_url_or_address(text: &str) -> Result<String, String> {
    if text.contains("://") {
        Ok(text.to_string())
    } else {
        connect_address(text)
    }
}

/// `--xds-max-streams-per-second`: a rate, or none.
#[derive(Debug, Clone, Copy)]
struct NewStreams(Option<StreamRate>);

fn parse_stream_rate(text: &str) -> Result<NewStreams, String> {
    match text.trim() {
        "off" => Ok(NewStreams(None)),
        // 0 is istiod's "unset": its automatic rate.
        "auto" | "0" => Ok(NewStreams(Some(StreamRate::automatic_here()))),
        number => number
            .parse()
            .ok()
            .and_then(StreamRate::per_second)
            .map(|rate| NewStreams(Some(rate)))
            .ok_or_else(|| format!("{text:?} is not a rate: give streams per second, auto or off")),
    }
}

fn positive_usize(text: &str) -> Result<usize, String> {
    match text.trim().parse() {
        Ok(0) | Err(_) => Err(format!("{text:?} is not a positive whole number")),
        Ok(number) => Ok(number),
    }
}

fn positive_duration(text: &str) -> Result<rudder::duration::Duration, String> {
    match text.parse::<rudder::duration::Duration>() {
        Ok(duration) if duration.is_zero() => Err("must be more than 0".to_string()),
        parsed => parsed.map_err(|error| error.to_string()),
    }
}

/// Raises the soft limit on open files to the hard limit, as Go's runtime does for istiod: each
/// proxy holds a connection, and the default soft limit (often 1024) is a few hundred proxies
/// away from refusing connections. Logs the limit in force.
fn raise_open_files_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return;
    };
    if soft < hard
        && let Err(error) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard)
    {
        tracing::warn!(%error, soft, hard, "cannot raise the open file limit");
        return;
    }
    let limit = getrlimit(Resource::RLIMIT_NOFILE).map_or(soft, |(soft, _)| soft);
    tracing::info!(limit, "open file limit");
}

fn parse_label_flag(label: &str) -> Result<(String, String), String> {
    parse_label(label).map_err(|error| error.to_string())
}

fn parse_metadata(metadata: Option<&str>) -> anyhow::Result<serde_json::Value> {
    match metadata {
        None => Ok(serde_json::Value::Null),
        Some(text) => serde_json::from_str(text).context("--metadata must be a JSON object"),
    }
}

/// Ctrl-C or SIGTERM (what Kubernetes sends), listened for from the moment this is called.
fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()>> {
    #[cfg(unix)]
    let (mut interrupt, mut terminate) = {
        use tokio::signal::unix::{SignalKind, signal};
        let listen = |kind: SignalKind| signal(kind).context("listen for signals");
        (
            listen(SignalKind::interrupt())?,
            listen(SignalKind::terminate())?,
        )
    };
    Ok(async move {
        #[cfg(unix)]
        let name = tokio::select! {
            _ = interrupt.recv() => "SIGINT",
            _ = terminate.recv() => "SIGTERM",
        };
        #[cfg(not(unix))]
        let name = {
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        };
        tracing::info!(signal = name, "shutting down");
    })
}
