//! Tests for `[[cluster]]` rules: names, credentials, node URLs and modes.

use super::*;

#[test]
fn bad_node_mode_names_its_key() {
    let text =
        "[[cluster]]\nname = \"c\"\nnodes = [{ name = \"a\", url = \"http://a\", mode = \"rw\" }]";
    let (key, message) = only_problem(parse(text));
    assert_eq!(key, "cluster[0].nodes[0].mode");
    assert!(
        message.contains("\"read-write\"") && message.contains("\"rw\""),
        "{message}"
    );
}

#[test]
fn password_without_username_is_refused() {
    let text = "[[cluster]]\nname = \"c\"\npassword = \"p\"\nnodes = [{ name = \"a\", url = \"http://a\" }]";
    let (key, _) = only_problem(parse(text));
    assert_eq!(key, "cluster[0].password");
}

#[test]
fn node_urls_must_be_http_or_https_with_a_host() {
    for url in [
        "http://a",
        "http://a:8086",
        "http://a:8086/",
        "http://[::1]:8086",
        "http://10.0.0.1",
        "https://a",
        "https://127.0.0.1:8086/",
    ] {
        assert!(node_url(url).is_ok(), "{url}");
    }
    for url in [
        "ftp://x",
        "a:8086",
        "/x",
        "http://a/db",
        "http://a?x=1",
        "http://a:0",
        "http://a:99999",
        "https://a/db",
        "",
    ] {
        let (key, message) = only_problem(node_url(url));
        assert_eq!(key, "cluster[0].nodes[0].url");
        assert!(message.contains(&format!("{url:?}")), "{message}");
    }
}

#[test]
fn https_nodes_are_accepted_and_default_to_port_443() {
    let config = node_url("https://a").unwrap();
    let node = &config.clusters[0].nodes[0];
    assert_eq!(node.url.scheme_str(), Some("https"));
    assert_eq!(node.port(), 443);
    assert_eq!(
        node_url("https://a:8086").unwrap().clusters[0].nodes[0].port(),
        8086
    );
}

#[test]
fn node_urls_with_other_schemes_are_refused() {
    for url in ["ftp://a", "tcp://a:8086", "unix://a"] {
        let (key, message) = only_problem(node_url(url));
        assert_eq!(key, "cluster[0].nodes[0].url");
        assert!(
            message.contains("expected an http:// or https:// URL"),
            "{message}"
        );
    }
}

#[test]
fn srv_clusters_may_discover_https_nodes() {
    let cluster = |scheme: &str| {
        format!(
            "[routing]\ndefault_cluster = \"main\"\n\
             [[cluster]]\nname = \"k8s\"\nsrv = \"_x._tcp.influxdb.svc\"\nscheme = {scheme:?}\n"
        )
    };
    let config = with_cluster(&cluster("https")).unwrap();
    assert_eq!(config.clusters[0].srv.as_ref().unwrap().scheme, "https");
    let text = cluster("tcp");
    let (key, message) = only_problem(with_cluster(&text));
    assert_eq!(key, "cluster[0].scheme");
    assert!(
        message.contains(r#"expected "http" or "https", got "tcp""#),
        "{message}"
    );
}

#[test]
fn credentials_in_node_urls_are_refused_without_being_quoted() {
    let (_, message) = only_problem(node_url("http://u:hunter2@a:8086"));
    assert!(!message.contains("hunter2"), "{message}");
}

#[test]
fn node_port_defaults_to_80() {
    assert_eq!(
        node_url("http://a").unwrap().clusters[0].nodes[0].port(),
        80
    );
    assert_eq!(
        node_url("http://a:8086").unwrap().clusters[0].nodes[0].port(),
        8086
    );
}

#[test]
fn names_must_be_present_and_use_safe_characters() {
    let text = "[[cluster]]\nname = \"a b\"\nnodes = [{ url = \"http://a\" }, { name = \"\", url = \"http://b\" }]";
    let keys: Vec<_> = problems(parse(text)).into_iter().map(|p| p.0).collect();
    assert_eq!(
        keys,
        [
            "cluster[0].name",
            "cluster[0].nodes[0].name",
            "cluster[0].nodes[1].name"
        ]
    );
}

#[test]
fn node_names_must_be_unique_across_clusters() {
    let text = "[routing]\ndefault_cluster = \"x\"\n\
                [[cluster]]\nname = \"x\"\nnodes = [{ name = \"a\", url = \"http://a\" }]\n\
                [[cluster]]\nname = \"y\"\nnodes = [{ name = \"a\", url = \"http://b\" }]";
    let (key, message) = only_problem(parse(text));
    assert_eq!(key, "cluster[1].nodes[0].name");
    assert!(message.contains("cluster[0].nodes[0]"), "{message}");
}

#[test]
fn cluster_names_must_be_unique() {
    let text = format!(
        "[routing]\ndefault_cluster = \"main\"\n{ONE_NODE}{}",
        ONE_NODE.replace("\"a\"", "\"b\"")
    );
    let (key, _) = only_problem(parse(&text));
    assert_eq!(key, "cluster[1].name");
}

#[test]
fn a_cluster_without_nodes_is_refused() {
    let (key, _) = only_problem(parse("[[cluster]]\nname = \"c\"\nnodes = []"));
    assert_eq!(key, "cluster[0].nodes");
    let (key, _) = only_problem(parse("[[cluster]]\nname = \"c\""));
    assert_eq!(key, "cluster[0].nodes");
}

#[test]
fn a_config_without_clusters_is_refused() {
    let (key, _) = only_problem(parse("[server]\nbind = \"127.0.0.1:5096\""));
    assert_eq!(key, "cluster");
}

#[test]
fn an_empty_username_is_refused() {
    let text = "[[cluster]]\nname = \"c\"\nusername = \"\"\nnodes = [{ name = \"a\", url = \"http://a\" }]";
    let (key, message) = only_problem(parse(text));
    assert_eq!(key, "cluster[0].username");
    assert!(message.contains("\"\""), "{message}");
}

#[test]
fn srv_clusters_start_empty_with_defaults() {
    let text = "[routing]\ndefault_cluster = \"main\"\ndns_servers = [\"127.0.0.1:5353\"]\n\
                [[cluster]]\nname = \"k8s\"\nsrv = \"_http._tcp.influxdb.svc\"\n";
    let config = with_cluster(text).unwrap();
    let k8s = &config.clusters[0];
    assert!(k8s.nodes.is_empty());
    let srv = k8s.srv.as_ref().unwrap();
    assert_eq!(srv.name, "_http._tcp.influxdb.svc");
    assert_eq!(srv.interval, Duration::from_secs(15));
    assert_eq!(srv.scheme, "http");
    assert_eq!(
        config.routing.dns_servers,
        vec!["127.0.0.1:5353".parse::<SocketAddr>().unwrap()]
    );
    assert!(config.clusters[1].srv.is_none());
}

#[test]
fn a_cluster_without_nodes_or_srv_is_refused() {
    let (key, message) = only_problem(parse("[[cluster]]\nname = \"c\"\n"));
    assert_eq!(key, "cluster[0].nodes");
    assert!(message.contains("srv"), "{message}");
}
