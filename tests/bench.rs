//! `filebus bench`: a quick run against our own binary prints its tables,
//! writes well-formed JSON, CSV and SVG files, and leaves no file and no
//! process behind, even when interrupted.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::util::{PATIENCE, Scratch, filebus_bin};

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

#[test]
fn quick_run_prints_tables_and_writes_json_and_svg_plots() {
    let scratch = Scratch::new();
    let parent = scratch.path("parent");
    std::fs::create_dir(&parent).expect("cannot create the scratch parent");
    let json_path = scratch.path("results.json");
    let plots = scratch.path("plots");
    let output = bench(
        &parent,
        &[
            "--quick",
            "--repeat",
            "1",
            "--output",
            json_path.to_str().expect("UTF-8 path"),
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
        "4. Idle cost",
        "5. Targets",
    ] {
        assert!(stdout.contains(heading), "no {heading:?} in:\n{stdout}");
    }
    for system in ["ours", "cat|cat", "tee+fifos"] {
        assert!(stdout.contains(system), "no {system:?} in:\n{stdout}");
    }
    assert!(
        !stdout.contains("Failed runs"),
        "a run of our binary failed:\n{stdout}"
    );
    assert!(stderr.contains("throughput ours"), "no progress: {stderr}");

    let json = std::fs::read_to_string(&json_path).expect("no JSON output");
    json::validate(&json).unwrap_or_else(|error| panic!("invalid JSON ({error}):\n{json}"));
    for key in [
        "\"results\"",
        "\"latency_distributions\"",
        "\"targets\"",
        "\"section\": \"idle\"",
        "\"metric\": \"p99\"",
        "\"metric\": \"delivered_percent\"",
    ] {
        assert!(json.contains(key), "no {key} in the JSON output");
    }

    for name in ["throughput.svg", "latency.svg", "loss.svg"] {
        let svg = std::fs::read_to_string(plots.join(name)).expect("plot missing");
        assert!(
            svg.starts_with("<svg ") && svg.trim_end().ends_with("</svg>"),
            "{name} is not an SVG document"
        );
        assert!(svg.contains("<polyline"), "{name} has no line");
    }
    assert_nothing_left(&parent);
}

#[test]
fn csv_output_has_a_header_and_rows_of_equal_width() {
    let scratch = Scratch::new();
    let parent = scratch.path("parent");
    std::fs::create_dir(&parent).expect("cannot create the scratch parent");
    let csv_path = scratch.path("results.csv");
    let output = bench(
        &parent,
        &[
            "--quick",
            "--repeat",
            "1",
            "--no-baselines",
            "--sections",
            "throughput,idle",
            "--output",
            csv_path.to_str().expect("UTF-8 path"),
        ],
    );
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
    let (section, metric, value) = (column("section"), column("metric"), column("value"));
    let throughput: Vec<f64> = records
        .iter()
        .filter(|record| record[section] == "throughput" && record[metric] == "throughput")
        .map(|record| record[value].parse().expect("throughput is a number"))
        .collect();
    assert_eq!(throughput.len(), 3, "one row per block size of --quick");
    assert!(throughput.iter().all(|mb| *mb > 0.0), "{throughput:?}");
    assert!(records.iter().any(|record| record[section] == "idle"));
    assert!(records.iter().any(|record| record[section] == "target"));
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

/// Just enough JSON to tell a valid document from an invalid one.
mod json {
    pub fn validate(text: &str) -> Result<(), String> {
        let mut parser = Parser {
            bytes: text.as_bytes(),
            at: 0,
        };
        parser.value()?;
        parser.space();
        if parser.at != parser.bytes.len() {
            return Err(format!("trailing text at byte {}", parser.at));
        }
        Ok(())
    }

    struct Parser<'a> {
        bytes: &'a [u8],
        at: usize,
    }

    impl Parser<'_> {
        fn space(&mut self) {
            while self
                .bytes
                .get(self.at)
                .is_some_and(|b| b" \t\r\n".contains(b))
            {
                self.at += 1;
            }
        }

        fn expect(&mut self, byte: u8) -> Result<(), String> {
            self.space();
            if self.bytes.get(self.at) == Some(&byte) {
                self.at += 1;
                Ok(())
            } else {
                Err(format!("expected {:?} at byte {}", byte as char, self.at))
            }
        }

        fn value(&mut self) -> Result<(), String> {
            self.space();
            match self.bytes.get(self.at) {
                Some(b'{') => self.sequence(b'}', true),
                Some(b'[') => self.sequence(b']', false),
                Some(b'"') => self.string(),
                Some(b't') => self.word("true"),
                Some(b'f') => self.word("false"),
                Some(b'n') => self.word("null"),
                Some(_) => self.number(),
                None => Err("unexpected end".into()),
            }
        }

        fn sequence(&mut self, close: u8, object: bool) -> Result<(), String> {
            self.at += 1;
            self.space();
            if self.bytes.get(self.at) == Some(&close) {
                self.at += 1;
                return Ok(());
            }
            loop {
                if object {
                    self.space();
                    self.string()?;
                    self.expect(b':')?;
                }
                self.value()?;
                self.space();
                match self.bytes.get(self.at) {
                    Some(b',') => self.at += 1,
                    Some(byte) if *byte == close => {
                        self.at += 1;
                        return Ok(());
                    }
                    _ => return Err(format!("bad separator at byte {}", self.at)),
                }
            }
        }

        fn string(&mut self) -> Result<(), String> {
            self.expect(b'"')?;
            while let Some(&byte) = self.bytes.get(self.at) {
                self.at += 1;
                match byte {
                    b'"' => return Ok(()),
                    b'\\' => {
                        let escape = self.bytes.get(self.at).copied();
                        self.at += if escape == Some(b'u') { 5 } else { 1 };
                        if !matches!(
                            escape,
                            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' | b'u')
                        ) {
                            return Err(format!("bad escape at byte {}", self.at));
                        }
                    }
                    byte if byte < 0x20 => {
                        return Err(format!("control character at byte {}", self.at));
                    }
                    _ => {}
                }
            }
            Err("unterminated string".into())
        }

        fn word(&mut self, word: &str) -> Result<(), String> {
            if self.bytes[self.at..].starts_with(word.as_bytes()) {
                self.at += word.len();
                Ok(())
            } else {
                Err(format!("bad literal at byte {}", self.at))
            }
        }

        fn number(&mut self) -> Result<(), String> {
            let start = self.at;
            while self
                .bytes
                .get(self.at)
                .is_some_and(|b| b"+-0123456789.eE".contains(b))
            {
                self.at += 1;
            }
            let text =
                std::str::from_utf8(&self.bytes[start..self.at]).map_err(|e| e.to_string())?;
            let valid = !text.is_empty()
                && !text.starts_with('+')
                && !text.starts_with('.')
                && text.parse::<f64>().is_ok_and(f64::is_finite);
            if valid {
                Ok(())
            } else {
                Err(format!("bad number {text:?} at byte {start}"))
            }
        }
    }
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
