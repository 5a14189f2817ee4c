//! The topology exports (`matrix --format json|dot`) of the examples, with the status their
//! agents would report: the JSON validates against docs/topology.schema.json (checked by
//! Python's jsonschema, Debian python3-jsonschema), the DOT renders with Graphviz (`dot`,
//! Debian graphviz), and names or errors from the cluster cannot break either.

use std::io::Write;
use std::process::{Command, Stdio};

mod fixtures;

use fixtures::{client, examples, laptop_clients, root, with_status};
use hostrole_operator::matrix::{self, Format, Options};
use hostrole_operator::topology::{self, Filter, Health, State};

fn run(program: &str, args: &[&str], input: &[u8]) -> (bool, String, String) {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{program}: {e} (scripts/install-deps.sh installs it)"));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input)
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Validates `json` against the committed schema with Python's jsonschema (Draft 2020-12, as
/// schemars writes it).
fn validate(json: &str) -> Result<(), String> {
    let schema = root().join("docs/topology.schema.json");
    let script = "import json, sys\nimport jsonschema\nschema = json.load(open(sys.argv[1]))\njsonschema.validators.validator_for(schema)(schema, format_checker=None).validate(json.load(sys.stdin))\nprint('valid')\n";
    let (ok, out, err) = run(
        "/usr/bin/python3",
        &["-c", script, schema.to_str().expect("utf-8")],
        json.as_bytes(),
    );
    if ok && out.contains("valid") {
        Ok(())
    } else {
        Err(err)
    }
}

#[test]
fn the_committed_schema_is_the_types() {
    let committed =
        std::fs::read_to_string(root().join("docs/topology.schema.json")).unwrap_or_default();
    assert!(
        committed == topology::schema(),
        "docs/topology.schema.json is stale: cargo run -q -p hostrole-operator -- topology-schema > docs/topology.schema.json"
    );
}

#[test]
fn the_examples_topology_has_every_host_role_edge_and_network_and_matches_its_schema() {
    let hostroles = with_status(examples("lan"), laptop_clients());
    let t = topology::build(&hostroles, &Filter::default());
    assert_eq!(t.regions.len(), 1);
    let groups: Vec<&str> = t.regions[0]
        .groups
        .iter()
        .map(|g| g.name.as_str())
        .collect();
    for name in ["office", "laptop", "tracker", "family", "study"] {
        assert!(groups.contains(&name), "{name} in {groups:?}");
    }
    let office = t.regions[0]
        .groups
        .iter()
        .find(|g| g.name == "office")
        .expect("office");
    let badges: Vec<&str> = office.hosts[0]
        .badges
        .iter()
        .map(|b| b.role.as_str())
        .collect();
    assert_eq!(badges, ["chat", "file", "mail", "print", "radio", "web"]);
    assert!(
        office.hosts[0]
            .badges
            .iter()
            .all(|b| b.state == State::Serving)
    );
    // Six edges from the laptop to the office; the failing one says so.
    assert_eq!(t.edges.len(), 6);
    assert!(
        t.edges
            .iter()
            .all(|e| e.from == "lan/laptop-0" && e.to == "lan/office" && e.to_group)
    );
    let print = t
        .edges
        .iter()
        .find(|e| e.service == "print")
        .expect("print");
    assert_eq!(print.health, Health::Failing);
    assert_eq!(print.reason.as_deref(), Some("Refused"));
    // The hybrid network is around its index, with the study among its peers.
    let family = t
        .networks
        .iter()
        .find(|n| n.name == "family")
        .expect("family");
    assert_eq!(family.index.as_deref(), Some("lan/tracker"));
    assert_eq!(family.peers.len(), 4);
    assert!(family.peers.iter().any(|p| p.host == "lan/study-0"));
    assert!(t.networks.iter().any(|n| n.mode == "Decentralized"));

    let json = topology::to_json(&t);
    validate(&json).unwrap_or_else(|e| panic!("{e}\n{json}"));
    // The schema is strict: what it does not describe is refused, so the check can fail.
    let mut odd: serde_json::Value = serde_json::from_str(&json).expect("json");
    odd["edges"][0]["health"] = "Sideways".into();
    assert!(validate(&odd.to_string()).is_err());
    odd["edges"][0]["health"] = "Ok".into();
    odd["regions"][0]["unexpected"] = true.into();
    assert!(validate(&odd.to_string()).is_err());

    // The same as the CLI prints it.
    let options = Options {
        format: Format::Json,
        roles: Vec::new(),
    };
    assert_eq!(matrix::render_as(&hostroles, &options), json);
}

#[test]
fn the_dot_export_renders_with_graphviz_with_failing_edges_red() {
    let hostroles = with_status(examples("lan"), laptop_clients());
    let dot = topology::to_dot(&topology::build(&hostroles, &Filter::default()));
    let (ok, svg, err) = run("dot", &["-Tsvg"], dot.as_bytes());
    assert!(ok, "dot refused it: {err}\n{dot}");
    let svg = svg.replace("&#45;", "-");
    for host in ["laptop-0", "office-0", "tracker-0", "family-2", "study-0"] {
        assert!(svg.contains(host), "{host} drawn");
    }
    // Five green edges and one red from the laptop, each with its service.
    // Edges are `<g class="edge">` groups; count those drawn in a colour.
    let lines = |colour: &str| {
        svg.split("class=\"edge\"")
            .skip(1)
            .filter(|edge| {
                edge.split("</g>").next().is_some_and(|e| {
                    e.contains(&format!("<path fill=\"none\" stroke=\"{colour}\""))
                })
            })
            .count()
    };
    assert_eq!(lines("#cf222e"), 1, "{svg}");
    assert_eq!(lines("#1a7f37"), 5, "{svg}");
    assert!(svg.contains("print Refused"), "{svg}");
    assert!(svg.contains("web 7ms"), "{svg}");
}

#[test]
fn names_and_errors_from_the_cluster_cannot_break_the_dot_or_json() {
    // A client's last error is whatever the server answered: quotes, braces, new lines, a
    // backslash at the end, control characters.
    let hostile = "\"]; evil [label=\"x\"]; }\n digraph { \\";
    let clients = vec![
        client("web", "office", false, &format!("{hostile}\u{1b}[2J")),
        client("web", "https://example.invalid/\"}", true, ""),
    ];
    let hostroles = with_status(examples("lan"), clients);
    let t = topology::build(&hostroles, &Filter::default());
    let dot = topology::to_dot(&t);
    assert!(!dot.contains('\u{1b}'), "{dot}");
    // Graphviz reads it as the graph meant: no node or graph the error text would have made,
    // and the error whole in its edge's tooltip.
    let (ok, canon, err) = run("dot", &["-Tcanon"], dot.as_bytes());
    assert!(ok, "dot refused it: {err}\n{dot}");
    assert!(
        !canon.lines().any(|l| l.trim_start().starts_with("evil")),
        "{canon}"
    );
    assert_eq!(
        canon.matches("digraph").count(),
        2,
        "the graph's and the text's: {canon}"
    );
    // The URL server is a node of its own, outside the groups.
    let url = t
        .edges
        .iter()
        .find(|e| !e.to_group)
        .expect("the URL client");
    assert_eq!(url.to, "https://example.invalid/\"}");
    validate(&topology::to_json(&t)).expect("valid json");
}

#[test]
fn filters_keep_the_hostroles_playing_a_role() {
    let hostroles = with_status(examples("lan"), laptop_clients());
    let only_print = Filter {
        roles: ["print".to_string()].into(),
        ..Default::default()
    };
    let t = topology::build(&hostroles, &only_print);
    let groups: Vec<&str> = t
        .regions
        .iter()
        .flat_map(|r| r.groups.iter().map(|g| g.name.as_str()))
        .collect();
    assert_eq!(groups, ["office", "study"]);
    // The laptop is filtered out, so are its edges.
    assert!(t.edges.is_empty());
    let table = matrix::render_as(
        &hostroles,
        &Options {
            format: Format::Table,
            roles: vec!["clients".into()],
        },
    );
    assert!(
        table.contains("lan/laptop-0") && table.contains("print"),
        "{table}"
    );
    let other_ns = Filter {
        namespaces: ["elsewhere".to_string()].into(),
        ..Default::default()
    };
    assert!(topology::build(&hostroles, &other_ns).regions.is_empty());
}

/// The elements of an SVG document, parsed by Python's XML parser (well-formed or not), as
/// `tag class` lines.
fn svg_elements(svg: &str) -> Result<Vec<String>, String> {
    let script = "import sys\nimport xml.etree.ElementTree as ET\nroot = ET.fromstring(sys.stdin.read())\nfor e in root.iter():\n    print(e.tag.split('}')[-1], e.get('class') or '', e.get('stroke') or '')\n";
    let (ok, out, err) = run("/usr/bin/python3", &["-c", script], svg.as_bytes());
    if ok {
        Ok(out.lines().map(str::to_string).collect())
    } else {
        Err(err)
    }
}

#[test]
fn the_svg_export_is_drawn_as_the_view_draws_it_and_escapes_what_the_cluster_says() {
    let hostroles = with_status(examples("lan"), laptop_clients());
    let svg = topology::to_svg(&topology::build(&hostroles, &Filter::default()), 1600.0);
    // To look at it: HOSTROLE_TOPOLOGY_SVG=/tmp/t.svg cargo test -p hostrole-operator --test topology
    if let Ok(path) = std::env::var("HOSTROLE_TOPOLOGY_SVG") {
        std::fs::write(path, &svg).expect("write");
    }
    let elements = svg_elements(&svg).unwrap_or_else(|e| panic!("{e}\n{svg}"));
    let count = |prefix: &str| elements.iter().filter(|l| l.starts_with(prefix)).count();
    assert_eq!(count("g host"), 10, "{svg}");
    assert_eq!(count("g group"), examples("lan").len());
    assert_eq!(count("path  #cf222e"), 1, "one failing client: {svg}");
    assert_eq!(count("path  #1a7f37"), 5);
    assert!(svg.contains("→ print office Refused"), "{svg}");
    // The same through the CLI's printer.
    let options = Options {
        format: Format::Svg,
        roles: Vec::new(),
    };
    assert_eq!(matrix::render_as(&hostroles, &options), svg);

    // Markup in a server's answer stays text.
    let hostile = "</title><script>alert(1)</script><g class=\"host\">";
    let clients = vec![client("web", "office", false, hostile)];
    let svg = topology::to_svg(
        &topology::build(&with_status(examples("lan"), clients), &Filter::default()),
        1600.0,
    );
    let elements = svg_elements(&svg).unwrap_or_else(|e| panic!("{e}\n{svg}"));
    assert!(!elements.iter().any(|l| l.starts_with("script")), "{svg}");
    assert_eq!(
        elements.iter().filter(|l| l.starts_with("g host")).count(),
        10
    );
}
