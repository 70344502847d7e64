//! `filebus bench`: a quick run against our own binary prints its tables,
//! writes well-formed JSON, CSV and SVG files, and leaves no file and no
//! process behind, even when interrupted; its help lists only its own
//! options.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::{PATIENCE, Running, Scratch, binary_data, filebus, filebus_bin, run, wait_until};

/// Runs `filebus bench ARGS --dir SCRATCH_PARENT` to completion.
fn bench(parent: &Path, args: &[&str]) -> Output {
    Command::new(filebus_bin())
        .arg("bench")
        .args(args)
        .arg("--dir")
        .arg(parent)
        .output()
        .expect("cannot run filebus bench")
}

/// Asserts the benchmark left nothing in `parent` and no process whose
/// command line mentions it.
fn assert_nothing_left(parent: &Path) {
    let left: Vec<_> = std::fs::read_dir(parent)
        .expect("cannot list the scratch parent")
        .map(|entry| entry.expect("bad entry").file_name())
        .collect();
    assert!(
        left.is_empty(),
        "left behind in {}: {left:?}",
        parent.display()
    );
    let needle = parent.to_string_lossy().into_owned();
    let mut survivors = Vec::new();
    for entry in std::fs::read_dir("/proc")
        .expect("cannot list /proc")
        .flatten()
    {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        // The scratch directory's name is in the arguments of every child
        // that uses a bus or a FIFO (and the benchmark has exited).
        if cmdline.contains(&needle) {
            survivors.push(cmdline);
        }
    }
    assert!(
        survivors.is_empty(),
        "processes left running: {survivors:?}"
    );
}

/// The rows of `report["results"]` of one section and metric.
fn rows<'a>(report: &'a Value, section: &str, metric: &str) -> Vec<&'a Value> {
    report["results"]
        .as_array()
        .expect("\"results\" is an array")
        .iter()
        .filter(|row| row["section"] == section && row["metric"] == metric)
        .collect()
}

/// A number of a row, which must be there.
fn number(row: &Value, key: &str) -> f64 {
    row[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} is not a number in {row}"))
}

/// What a quick run of every section, with the baselines and `--repeat 1`,
/// writes with `--output FILE.json`.
fn check_json_report(report: &Value) {
    assert_eq!(report["tool"], "filebus bench");
    assert_eq!(report["quick"], true);
    assert_eq!(report["baselines"], true);
    assert!(number(report, "seconds") > 0.0, "{}", report["seconds"]);
    assert!(number(&report["machine"], "cpus") >= 1.0);
    for key in ["kernel", "scratch", "filesystem"] {
        let text = report["machine"][key].as_str().unwrap_or_default();
        assert!(!text.is_empty(), "machine.{key}: {}", report["machine"]);
    }
    assert_eq!(
        report["sections"],
        serde_json::json!(["throughput", "latency", "loss", "fan-out", "idle"])
    );
    assert_eq!(report["plan"]["history_depth"], 64);
    assert_eq!(
        report["plan"]["fanout_consumers"],
        serde_json::json!([1, 4, 16])
    );
    assert_eq!(report["implementations"][0]["name"], "ours");
    assert_eq!(report["implementations"][0]["reference"], false);
    assert_eq!(report["implementations"][0]["floor"], false);
    // The protocol floor runs by default, in every sweep.
    assert_eq!(report["implementations"][1]["name"], "floor");
    assert_eq!(report["implementations"][1]["floor"], true);
    assert_eq!(report["plan"]["repeat"], 1);
    assert_eq!(
        report["plan"]["block_sizes"],
        serde_json::json!([4096, 65536, 1048576])
    );
    assert_eq!(report["failures"], serde_json::json!([]));
    assert!(
        report.get("targets").is_none(),
        "the project's targets are in the JSON"
    );

    // Throughput: ours and cat|cat at each block size, a positive median
    // within its range.
    let throughput = rows(report, "throughput", "throughput");
    for system in ["ours", "floor", "cat|cat"] {
        let mut sizes: Vec<u64> = throughput
            .iter()
            .filter(|row| row["system"] == system)
            .map(|row| row["block_size"].as_u64().expect("block_size"))
            .collect();
        sizes.sort_unstable();
        assert_eq!(sizes, [4096, 65536, 1048576], "{system}");
    }
    for row in &throughput {
        let (value, min, max) = (number(row, "value"), number(row, "min"), number(row, "max"));
        assert!(0.0 < min && min <= value && value <= max, "{row}");
        assert_eq!(row["unit"], "MB/s");
        assert_eq!(row["runs"], 1);
    }
    // CPU per chunk of the producer and consumer, ours beside the floor's.
    let cpu = rows(report, "throughput", "cpu_per_chunk");
    for system in ["ours", "floor"] {
        let mut sizes: Vec<u64> = cpu
            .iter()
            .filter(|row| row["system"] == system)
            .map(|row| {
                assert!(number(row, "value") > 0.0, "{row}");
                assert_eq!(row["unit"], "us");
                if system == "ours" {
                    assert!(number(row, "fraction_of_floor") > 0.0, "{row}");
                }
                row["block_size"].as_u64().expect("block_size")
            })
            .collect();
        sizes.sort_unstable();
        assert_eq!(sizes, [4096, 65536, 1048576], "CPU per chunk of {system}");
    }
    let ours_lossless = |row: &&&Value| row["system"] == "ours" && row["mode"] == "lossless";
    assert_eq!(
        throughput.iter().filter(ours_lossless).count(),
        3,
        "ours is measured lossless"
    );

    // Latency: every record of ours and of the floor delivered in both
    // modes, quantiles in order, at 100 records/s with the low-latency
    // --sleep-interval and at 50 and 5 records/s (one every 20 ms and 200
    // ms) with default options; ours beside the floor at each.
    assert_eq!(
        report["plan"]["latency_points"],
        serde_json::json!([
            {"rate": 100, "records": 200, "options": "low-latency --sleep-interval"},
            {"rate": 50, "records": 40, "options": "default options"},
            {"rate": 5, "records": 10, "options": "default options"},
        ])
    );
    for (system, mode, rate) in [
        ("ours", "lossy", 100),
        ("ours", "lossless", 100),
        ("floor", "lossy", 100),
        ("floor", "lossless", 100),
        ("ours", "lossy", 50),
        ("ours", "lossless", 50),
        ("floor", "lossy", 50),
        ("floor", "lossless", 50),
        ("ours", "lossy", 5),
        ("ours", "lossless", 5),
        ("floor", "lossy", 5),
        ("floor", "lossless", 5),
    ] {
        let row_of = |metric: &str| {
            let found = rows(report, "latency", metric);
            let found: Vec<_> = found
                .into_iter()
                .filter(|row| row["system"] == system && row["mode"] == mode && row["rate"] == rate)
                .collect();
            assert_eq!(found.len(), 1, "{metric} of {system} {mode} at {rate}/s");
            found[0]
        };
        let of_ours = |metric: &str| number(row_of(metric), "value");
        let note = if rate == 100 {
            "--sleep-interval 0"
        } else {
            "default options"
        };
        assert_eq!(row_of("p50")["note"], note, "{system} {mode} at {rate}/s");
        if system == "ours" {
            let fraction = number(row_of("p50"), "fraction_of_floor");
            assert!(fraction > 0.0, "{mode} at {rate}/s: {fraction}");
        }
        let (delivered, sent) = (of_ours("records_delivered"), of_ours("records_sent"));
        if system == "floor" && mode == "lossy" {
            // The floor has none of our care for wake-ups: on a busy machine
            // its lossy consumer may miss a record of 100 a second.
            assert!(
                delivered >= 0.9 * sent,
                "{system} {mode}: {delivered} of {sent}"
            );
        } else {
            assert_eq!(delivered, sent, "{system} {mode}");
        }
        let quantiles = ["min", "p50", "p90", "p99", "p99.9", "max"].map(of_ours);
        assert!(quantiles[0] > 0.0, "{mode}: {quantiles:?}");
        assert!(
            quantiles.windows(2).all(|pair| pair[0] <= pair[1]),
            "{mode}: {quantiles:?}"
        );
    }
    let distributions = report["latency_distributions"]
        .as_array()
        .expect("latency_distributions");
    assert!(
        distributions.len() >= 15,
        "ours x2, floor x2 and cat|cat at three points"
    );
    for distribution in distributions {
        let points = distribution["points"].as_array().expect("points");
        let percentiles: Vec<f64> = points
            .iter()
            .map(|point| point[0].as_f64().expect("a (percentile, us) pair"))
            .collect();
        assert_eq!(percentiles.first(), Some(&0.0), "{distribution}");
        assert_eq!(percentiles.last(), Some(&100.0), "{distribution}");
        assert!(percentiles.windows(2).all(|pair| pair[0] < pair[1]));
    }

    // Loss: a share of what was sent, the rate achieved and the CPU per
    // record, at every rate and consumer count of --quick, for ours in each
    // mode and for tee into FIFOs; nothing torn, and named consumers get
    // every record.
    let mut points = Vec::new();
    for mode in ["lossy", "history", "named"] {
        points.push(("ours", mode));
        points.push(("floor", mode));
    }
    points.push(("tee+fifos", "fifo"));
    for metric in ["delivered_percent", "achieved_rate", "cpu_per_record"] {
        let found = rows(report, "loss", metric);
        assert_eq!(found.len(), points.len() * 3 * 2, "{metric}: {found:?}");
        for (system, mode) in &points {
            for rate in [1000, 10000, 100000] {
                for consumers in [1, 4] {
                    let row = found
                        .iter()
                        .find(|row| {
                            row["system"] == *system
                                && row["mode"] == *mode
                                && row["rate"] == rate
                                && row["consumers"] == consumers
                        })
                        .unwrap_or_else(|| {
                            panic!("no {metric} of {system} {mode} x{consumers} at {rate}/s")
                        });
                    let value = number(row, "value");
                    match metric {
                        "delivered_percent" => {
                            assert!((0.0..=100.0).contains(&value), "{row}")
                        }
                        _ => assert!(value > 0.0, "{row}"),
                    }
                    if *mode == "named" && metric == "delivered_percent" {
                        assert_eq!(value, 100.0, "named consumers lost records: {row}");
                    }
                }
            }
        }
    }
    for row in rows(report, "loss", "delivered_percent") {
        let history = row["mode"] == "history" || row["mode"] == "named";
        let note = row["note"].as_str().unwrap_or_default();
        assert_eq!(note.contains("--history 64"), history, "{row}");
    }
    for row in rows(report, "loss", "torn_total") {
        assert_eq!(row["value"], 0.0, "{row}");
    }

    // Fan-out: ours lossy and named and tee into FIFOs at each consumer
    // count, with the CPU of the producer, of the consumers and of both, and
    // peak memory.
    let fanout_points = [
        ("ours", "lossy"),
        ("ours", "named"),
        ("floor", "lossy"),
        ("floor", "named"),
        ("tee+fifos", "fifo"),
    ];
    for (metric, role) in [
        ("delivered_percent", None),
        ("achieved_rate", None),
        ("cpu_per_record", None),
        ("cpu_percent", Some("producer")),
        ("cpu_percent", Some("consumer")),
        ("cpu_percent_total", None),
        ("peak_rss", Some("producer")),
        ("peak_rss_sum", Some("consumer")),
    ] {
        let found: Vec<&Value> = rows(report, "fan-out", metric)
            .into_iter()
            .filter(|row| row["role"].as_str() == role)
            .collect();
        assert_eq!(found.len(), fanout_points.len() * 3, "{metric}: {found:?}");
        for (system, mode) in fanout_points {
            for consumers in [1, 4, 16] {
                let row = found
                    .iter()
                    .find(|row| {
                        row["system"] == system
                            && row["mode"] == mode
                            && row["consumers"] == consumers
                            && row["rate"] == 10000
                    })
                    .unwrap_or_else(|| panic!("no {metric} of {system} {mode} x{consumers}"));
                assert!(number(row, "value") > 0.0, "{row}");
            }
        }
    }

    // The floor beside every figure: each row of ours whose point the floor
    // measured (all but idle) carries ours over the floor's, exactly.
    let results = report["results"]
        .as_array()
        .expect("\"results\" is an array");
    let point = |row: &Value| {
        [
            "section",
            "mode",
            "block_size",
            "rate",
            "consumers",
            "role",
            "metric",
        ]
        .map(|key| row[key].clone())
    };
    let mut compared = std::collections::BTreeSet::new();
    for ours in results.iter().filter(|row| row["system"] == "ours") {
        let floor = results
            .iter()
            .find(|row| row["system"] == "floor" && point(row) == point(ours));
        let floor_value = floor.and_then(|floor| floor["value"].as_f64());
        match (ours["fraction_of_floor"].as_f64(), floor_value) {
            (Some(fraction), Some(floor_value)) => {
                let expected = number(ours, "value") / floor_value;
                assert!(
                    (fraction - expected).abs() <= 1e-4 * expected.abs(),
                    "{ours}"
                );
                compared.insert(ours["section"].as_str().unwrap_or_default().to_owned());
            }
            (None, Some(floor_value)) => assert!(
                ours["section"] == "idle" || floor_value == 0.0,
                "no fraction of the floor in {ours}"
            ),
            (Some(_), None) => panic!("a fraction without a floor in {ours}"),
            (None, None) => {}
        }
    }
    assert_eq!(
        compared.into_iter().collect::<Vec<_>>(),
        ["fan-out", "latency", "loss", "throughput"]
    );
    for row in results.iter().filter(|row| row["system"] == "floor") {
        assert!(row.get("fraction_of_floor").is_none(), "{row}");
    }

    // Idle: both roles of ours in both modes, in a quiet directory and in
    // a busy one.
    let idle = rows(report, "idle", "peak_rss");
    for (mode, role) in [
        ("lossy", "producer"),
        ("lossy", "consumer"),
        ("lossless", "producer"),
        ("lossless", "consumer"),
    ] {
        let found: Vec<_> = idle
            .iter()
            .filter(|row| row["system"] == "ours" && row["mode"] == mode && row["role"] == role)
            .collect();
        let directories: Vec<_> = found
            .iter()
            .map(|row| row["note"].as_str().unwrap_or_default())
            .map(|note| note.contains("directory busy: "))
            .collect();
        assert_eq!(directories, [false, true], "idle {mode} {role}: {found:?}");
        for row in found {
            assert!(number(row, "value") > 0.0, "{row}");
        }
    }
}

#[test]
fn quick_run_prints_tables_and_writes_json_and_svg_plots() {
    let scratch = Scratch::new();
    let parent = scratch.path("parent");
    std::fs::create_dir(&parent).expect("cannot create the scratch parent");
    let json_path = scratch.path("results.json");
    let csv_path = scratch.path("results.csv");
    let plots = scratch.path("plots");
    let output = bench(
        &parent,
        &[
            "--quick",
            "--repeat",
            "1",
            "--output",
            json_path.to_str().expect("UTF-8 path"),
            "--output",
            csv_path.to_str().expect("UTF-8 path"),
            "--plots",
            plots.to_str().expect("UTF-8 path"),
        ],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "bench failed: {stderr}\n{stdout}");
    for heading in [
        "1. Lossless throughput",
        "2. Latency",
        "3. Loss versus rate",
        "4. Fan-out",
        "5. Idle cost",
    ] {
        assert!(stdout.contains(heading), "no {heading:?} in:\n{stdout}");
    }
    // The project's own targets are judged in results/, not shown to users.
    assert!(!stdout.contains("Targets"), "targets printed:\n{stdout}");
    for system in [
        "ours lossy",
        "ours history",
        "ours named",
        "floor lossy",
        "floor history",
        "floor named",
        "cat|cat",
        "tee+fifos",
    ] {
        assert!(stdout.contains(system), "no {system:?} in:\n{stdout}");
    }
    // Where loss begins, for every mode, and which modes block instead.
    for line in [
        "ours lossy x1: ",
        "ours history x4: ",
        "ours named x1: ",
        "tee+fifos x4: ",
    ] {
        assert!(stdout.contains(line), "no {line:?} in:\n{stdout}");
    }
    assert!(
        stdout.contains("named consumers hold the producer back instead of dropping records"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("Failed runs"),
        "a run of our binary failed:\n{stdout}"
    );
    // Every table gives ours as a fraction of the floor.
    for column in ["of floor", "p50 x floor", "x floor", "CPU/rec x floor"] {
        assert!(stdout.contains(column), "no {column:?} in:\n{stdout}");
    }
    assert!(
        stdout.contains("ours reaches, of what the protocol allows here (the floor's MB/s): "),
        "{stdout}"
    );
    assert!(stderr.contains("throughput ours"), "no progress: {stderr}");

    let json = std::fs::read_to_string(&json_path).expect("no JSON output");
    let report: Value = serde_json::from_str(&json)
        .unwrap_or_else(|error| panic!("invalid JSON ({error}):\n{json}"));
    check_json_report(&report);
    check_csv_matches_json(&csv_path, &report);

    // Each plot: its title, axis labels, ticks and one legend entry per
    // series (each text is a line of its own), and a line of each series'
    // color (the first and second of the palette).
    for (name, texts) in [
        (
            "throughput.svg",
            &[
                "Lossless throughput versus block size",
                "block size",
                "MB/s (10^6 bytes/s)",
                "4 KiB",
                "1 MiB",
                "ours",
                "cat|cat",
            ][..],
        ),
        (
            "latency.svg",
            &[
                "percentile",
                "latency (microseconds)",
                "99%",
                "ours lossy",
                "ours lossless",
                "cat|cat",
            ],
        ),
        (
            "loss.svg",
            &[
                "records per second asked",
                "% of records delivered",
                "100%",
                "ours lossy x1",
                "ours lossy x4",
                "ours history x1",
                "ours history x4",
                "ours named x1",
                "ours named x4",
                "tee+fifos x1",
                "tee+fifos x4",
            ],
        ),
        (
            "loss-cpu.svg",
            &[
                "records per second asked",
                "CPU microseconds per record delivered",
                "ours lossy x1",
                "ours named x4",
                "tee+fifos x4",
            ],
        ),
        (
            "loss-rate.svg",
            &[
                "records per second asked",
                "records per second achieved",
                "ours history x1",
                "tee+fifos x1",
            ],
        ),
        (
            "fan-out.svg",
            &[
                "consumers",
                "CPU, % of one CPU",
                "16",
                "ours lossy",
                "ours lossy producer",
                "ours named",
                "ours named producer",
                "tee+fifos",
                "tee+fifos producer",
            ],
        ),
    ] {
        let svg = std::fs::read_to_string(plots.join(name)).expect("plot missing");
        assert!(
            svg.starts_with("<svg ") && svg.trim_end().ends_with("</svg>"),
            "{name} is not an SVG document"
        );
        for text in texts {
            assert!(
                svg.lines().any(|line| line == *text),
                "no text {text:?} in {name}"
            );
        }
        for color in ["#1F77B4", "#D62728"] {
            let stroke = format!("stroke=\"{color}\"");
            assert!(
                svg.lines()
                    .any(|line| line.starts_with("<polyline") && line.contains(&stroke)),
                "no {color} line in {name}"
            );
        }
    }
    assert_nothing_left(&parent);
}

/// The CSV file of the same run carries the same loss and fan-out points as
/// the JSON file, the mode named in its own column.
fn check_csv_matches_json(csv_path: &Path, report: &Value) {
    let text = std::fs::read_to_string(csv_path).expect("no CSV output");
    let records = csv::parse(&text);
    let header = &records[0];
    let column = |name: &str| {
        header
            .iter()
            .position(|field| field == name)
            .unwrap_or_else(|| panic!("no column {name}"))
    };
    let keys = [
        "section",
        "system",
        "mode",
        "rate",
        "consumers",
        "role",
        "metric",
    ];
    let columns = keys.map(column);
    let mut from_csv: Vec<Vec<String>> = records[1..]
        .iter()
        .filter(|record| record[columns[0]] == "loss" || record[columns[0]] == "fan-out")
        .map(|record| columns.iter().map(|&index| record[index].clone()).collect())
        .collect();
    let mut from_json: Vec<Vec<String>> = report["results"]
        .as_array()
        .expect("\"results\" is an array")
        .iter()
        .filter(|row| row["section"] == "loss" || row["section"] == "fan-out")
        .map(|row| {
            keys.iter()
                .map(|key| match &row[*key] {
                    Value::String(text) => text.clone(),
                    Value::Null => String::new(),
                    other => other.to_string(),
                })
                .collect()
        })
        .collect();
    from_csv.sort();
    from_json.sort();
    assert!(!from_json.is_empty());
    assert_eq!(from_csv, from_json);
    let modes: std::collections::BTreeSet<(&str, &str)> = from_csv
        .iter()
        .map(|row| (row[0].as_str(), row[2].as_str()))
        .collect();
    let expected: std::collections::BTreeSet<(&str, &str)> = [
        ("fan-out", "fifo"),
        ("fan-out", "lossy"),
        ("fan-out", "named"),
        ("loss", "fifo"),
        ("loss", "history"),
        ("loss", "lossy"),
        ("loss", "named"),
    ]
    .into_iter()
    .collect();
    assert_eq!(modes, expected);
}

/// The long options a help text defines: the first long option of each
/// line that starts with a dash ("-v, --verbose..." gives "--verbose").
fn options_listed(help: &str) -> Vec<String> {
    help.lines()
        .map(str::trim_start)
        .filter(|line| line.starts_with('-'))
        .filter_map(|line| {
            line.split([' ', ','])
                .find(|word| word.starts_with("--"))
                .map(|word| word.trim_end_matches("...").to_owned())
        })
        .collect()
}

#[test]
fn help_lists_only_the_options_of_the_bench() {
    let help = |args: &[&str]| {
        let output = Command::new(filebus_bin())
            .args(args)
            .output()
            .expect("cannot run filebus");
        assert!(output.status.success(), "{args:?}");
        options_listed(&String::from_utf8(output.stdout).expect("UTF-8 help"))
    };
    let bench = help(&["bench", "--help"]);
    assert_eq!(
        bench,
        [
            "--help",
            "--implementation",
            "--reference",
            "--reference-sleep-interval",
            "--no-baselines",
            "--no-floor",
            "--quick",
            "--sections",
            "--repeat",
            "--output",
            "--plots",
            "--dir",
        ]
    );
    // The producer's and consumer's command line is unchanged.
    let bus_options = [
        "--back-pressure",
        "--block-size",
        "--no-file-monitoring",
        "--filename",
        "--sleep-interval",
        "--format",
        "--max-chunk-size",
        "--verbose",
        "--quiet",
        "--input-method",
        "--output-method",
        "--named-temp-files",
    ];
    for side in ["producer", "consumer"] {
        let listed = help(&[side, "--help"]);
        for option in bus_options {
            assert!(
                listed.iter().any(|listed| listed == option),
                "no {option} in {side} --help: {listed:?}"
            );
        }
    }
}

#[test]
fn options_of_producers_and_consumers_are_refused_by_the_bench() {
    let scratch = Scratch::new();
    for args in [
        &["bench", "--block-size", "4096"][..],
        &["--filename", "bus", "bench"],
        &["bench", "--lossless"],
        &["-v", "bench"],
    ] {
        // A missing program is refused too, after the options: if those
        // were let through, the message says so, and no benchmark runs.
        let output = Command::new(filebus_bin())
            .args(args)
            .args(["--implementation", "/nonexistent/filebus"])
            .current_dir(scratch.dir.path())
            .output()
            .expect("cannot run filebus");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(
            stderr.contains("does not apply to bench"),
            "{args:?}: {stderr}"
        );
    }
    assert!(scratch.names().is_empty(), "{:?}", scratch.names());
}

/// Runs `filebus bench --quick --repeat 1 --no-baselines --sections
/// SECTIONS --output OUTPUT` in a new scratch parent, which it returns with
/// the scratch directory that holds it.
fn quick_sections(sections: &str, output: &str) -> (Scratch, std::path::PathBuf, Output) {
    let scratch = Scratch::new();
    let parent = scratch.path("parent");
    std::fs::create_dir(&parent).expect("cannot create the scratch parent");
    let path = scratch.path(output);
    let output = bench(
        &parent,
        &[
            "--quick",
            "--repeat",
            "1",
            "--no-baselines",
            "--sections",
            sections,
            "--output",
            path.to_str().expect("UTF-8 path"),
        ],
    );
    (scratch, parent, output)
}

#[test]
fn csv_output_has_a_header_and_rows_of_equal_width() {
    let (scratch, parent, output) = quick_sections("throughput,idle", "results.csv");
    let csv_path = scratch.path("results.csv");
    assert!(
        output.status.success(),
        "bench failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = std::fs::read_to_string(&csv_path).expect("no CSV output");
    let records = csv::parse(&text);
    let header = &records[0];
    assert_eq!(header[0], "section");
    assert!(header.contains(&"value".to_owned()));
    for record in &records[1..] {
        assert_eq!(record.len(), header.len(), "ragged row {record:?}");
    }
    let column = |name: &str| {
        header
            .iter()
            .position(|field| field == name)
            .unwrap_or_else(|| panic!("no column {name}"))
    };
    let (section, system, metric, value) = (
        column("section"),
        column("system"),
        column("metric"),
        column("value"),
    );
    let fraction = column("fraction_of_floor");
    for name in ["ours", "floor"] {
        let throughput: Vec<(f64, &str)> = records
            .iter()
            .filter(|record| {
                record[section] == "throughput"
                    && record[metric] == "throughput"
                    && record[system] == name
            })
            .map(|record| {
                let mb = record[value].parse().expect("throughput is a number");
                (mb, record[fraction].as_str())
            })
            .collect();
        assert_eq!(
            throughput.len(),
            3,
            "one row of {name} per block size of --quick"
        );
        assert!(throughput.iter().all(|(mb, _)| *mb > 0.0), "{throughput:?}");
        // Ours as a fraction of the floor; the floor's own rows have none.
        assert!(
            throughput.iter().all(|(_, fraction)| {
                (name == "floor") == fraction.is_empty()
                    && (fraction.is_empty() || fraction.parse::<f64>().is_ok_and(|f| f > 0.0))
            }),
            "{name}: {throughput:?}"
        );
    }
    assert!(records.iter().any(|record| record[section] == "idle"));
    assert!(
        records.iter().all(|record| record[section] != "target"),
        "the project's targets are in the CSV"
    );
    assert_nothing_left(&parent);
}

#[test]
fn interrupted_run_stops_its_children_and_removes_its_files() {
    let scratch = Scratch::new();
    let parent = scratch.path("parent");
    std::fs::create_dir(&parent).expect("cannot create the scratch parent");
    let child = Command::new(filebus_bin())
        .args([
            "bench",
            "--quick",
            "--no-baselines",
            "--sections",
            "latency",
        ])
        .arg("--dir")
        .arg(&parent)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run filebus bench");
    // Wait until a run is under way: a run directory exists.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let running = std::fs::read_dir(&parent)
            .expect("cannot list the scratch parent")
            .flatten()
            .any(|scratch| scratch.path().join("run-0001").exists());
        if running {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the benchmark never started a run"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let output = child.wait_with_output().expect("cannot wait for bench");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "stderr: {stderr}");
    assert!(stderr.contains("interrupted"), "stderr: {stderr}");
    assert_nothing_left(&parent);
}

#[test]
fn bad_bench_options_are_usage_errors() {
    let scratch = Scratch::new();
    for args in [
        &["--output", "results.txt"][..],
        &[
            "--implementation",
            "a=/bin/true",
            "--implementation",
            "a=/bin/true",
        ],
        &["--implementation", "/nonexistent/filebus"],
        &["--sections", "speed"],
    ] {
        let output = bench(scratch.dir.path(), args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
    }
    assert!(scratch.names().is_empty(), "{:?}", scratch.names());
}

/// RFC 4180 records.
mod csv {
    pub fn parse(text: &str) -> Vec<Vec<String>> {
        let mut records = Vec::new();
        let mut record = Vec::new();
        let mut field = String::new();
        let mut quoted = false;
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match (quoted, c) {
                (true, '"') if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                (true, '"') => quoted = false,
                (true, c) => field.push(c),
                (false, '"') => quoted = true,
                (false, ',') => record.push(std::mem::take(&mut field)),
                (false, '\n') => {
                    record.push(std::mem::take(&mut field));
                    records.push(std::mem::take(&mut record));
                }
                (false, c) => field.push(c),
            }
        }
        assert!(!quoted, "unterminated quoted field");
        assert!(field.is_empty() && record.is_empty(), "no final line break");
        records
    }
}

/// `filebus bench-floor ARGS... SIDE_ARGS` on `bus`: the benchmark's
/// protocol floor, as the benchmark runs it.
fn floor(bus: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(filebus_bin());
    command
        .arg("bench-floor")
        .arg("--filename")
        .arg(bus)
        .args(args);
    command
}

/// The throughput sweep checks every byte the floor passes through, like
/// every implementation's: a run that loses, adds or changes a byte is a
/// failed run, and there is none. Each of ours' figures carries its
/// fraction of the floor's.
#[test]
fn the_floor_passes_every_byte_of_the_throughput_sweep() {
    let (scratch, parent, output) = quick_sections("throughput", "results.json");
    let json_path = scratch.path("results.json");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "bench failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(&json_path).expect("no JSON output"))
            .expect("invalid JSON");
    assert_eq!(report["failures"], serde_json::json!([]), "{stdout}");
    assert!(!stdout.contains("Failed runs"), "{stdout}");
    let throughput = rows(&report, "throughput", "throughput");
    for block_size in [4096, 65536, 1048576] {
        let of = |system: &str| {
            let found: Vec<_> = throughput
                .iter()
                .filter(|row| row["system"] == system && row["block_size"] == block_size)
                .collect();
            assert_eq!(found.len(), 1, "{system} at {block_size}: {found:?}");
            found[0]
        };
        let (ours, floor) = (of("ours"), of("floor"));
        let fraction = number(ours, "fraction_of_floor");
        let expected = number(ours, "value") / number(floor, "value");
        assert!(
            (fraction / expected - 1.0).abs() < 1e-4,
            "{ours} against {floor}"
        );
        assert!(floor.get("fraction_of_floor").is_none(), "{floor}");
    }
    assert!(
        stdout.contains("ours reaches, of what the protocol allows here"),
        "{stdout}"
    );
    assert_nothing_left(&parent);
}

/// What the floor publishes, lossless, is the filebus protocol: our
/// consumer takes it byte for byte, and the floor's consumer takes what our
/// producer publishes.
#[test]
fn our_consumer_reads_what_the_floor_publishes_byte_for_byte() {
    let input = binary_data((1 << 20) + 12_345);
    for (producer_is_floor, block_size) in [(true, "4096"), (false, "4096"), (true, "65536")] {
        let scratch = Scratch::new();
        let bus = scratch.bus();
        let consumer_args = ["--back-pressure", "--block-size", block_size, "consumer"];
        let producer_args = ["--back-pressure", "--block-size", block_size, "producer"];
        let (consumer, producer) = if producer_is_floor {
            (filebus(&bus, &consumer_args), floor(&bus, &producer_args))
        } else {
            (floor(&bus, &consumer_args), filebus(&bus, &producer_args))
        };
        let consumer = Running::start(consumer, None);
        run(producer, &input).assert_success();
        let finished = consumer.wait();
        finished.assert_success();
        let what = if producer_is_floor {
            "our consumer of the floor's producer"
        } else {
            "the floor's consumer of our producer"
        };
        assert!(
            finished.stdout == input,
            "{what}, block size {block_size}: {} bytes out of {} in, first difference at {:?}",
            finished.stdout.len(),
            input.len(),
            finished
                .stdout
                .iter()
                .zip(&input)
                .position(|(out, sent)| out != sent)
        );
        assert!(
            !bus.exists(),
            "{what}: the end-of-stream chunk is still there"
        );
    }
}

/// The floor's own lossless hand-off, and its history with named
/// consumers (ours and its own), lose nothing and change nothing.
#[test]
fn the_floor_delivers_every_byte_lossless_and_to_named_consumers() {
    let input = binary_data((1 << 20) + 777);
    let scratch = Scratch::new();
    let bus = scratch.bus();
    let consumer = Running::start(
        floor(
            &bus,
            &["--back-pressure", "--block-size", "4096", "consumer"],
        ),
        None,
    );
    run(
        floor(
            &bus,
            &["--back-pressure", "--block-size", "4096", "producer"],
        ),
        &input,
    )
    .assert_success();
    let finished = consumer.wait();
    finished.assert_success();
    assert!(finished.stdout == input, "lossless floor to floor");

    // Named consumers hold the floor's producer back: a window of 8
    // chunks, 260 chunks through.
    let bus = scratch.path("named");
    let theirs = Running::start(
        floor(
            &bus,
            &["--block-size", "4096", "consumer", "--name", "floor"],
        ),
        None,
    );
    let ours = Running::start(filebus(&bus, &["-vv", "consumer", "--name", "ours"]), None);
    // Ours is registered once it says where it starts (its cursor claimed
    // and its position recorded): a chunk published before that is not
    // its to get. (A cursor file alone may not be locked yet.)
    crate::util::wait_until_ready(&ours);
    wait_until("the floor's cursor claimed", || {
        scratch.path("named.consumers").join("floor").exists()
    });
    run(
        floor(
            &bus,
            &["--block-size", "4096", "producer", "--history", "8"],
        ),
        &input,
    )
    .assert_success();
    for (who, consumer) in [("the floor's", theirs), ("our", ours)] {
        let finished = consumer.wait();
        finished.assert_success();
        assert!(
            finished.stdout == input,
            "{who} named consumer: {} bytes out of {}",
            finished.stdout.len(),
            input.len()
        );
    }
}
