//! The tables printed on standard output, one per section, then any failed
//! runs.

use std::fmt::Write as _;

use super::format::{
    bytes_label, group_digits, mib, micros, mode_name, percent_text, role_name, sig,
};
use super::rows::fraction;
use super::{QUANTILES, is_pipe};
use crate::Results;
use crate::idle::Measurement;
use crate::loss::Point;
use crate::stats::Summary;
use crate::system::{Mode, Role, TEE_FIFOS, format_seconds, label};

/// A text table: optional group titles over the columns, a header, rows.
/// The first column is left-aligned, the others right-aligned.
struct Table {
    groups: Vec<(String, usize)>,
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new(header: &[&str]) -> Table {
        Table {
            groups: Vec::new(),
            header: header.iter().map(|text| (*text).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    fn render(&self, out: &mut String) {
        let columns = self.header.len();
        let mut widths: Vec<usize> = self
            .header
            .iter()
            .map(|text| text.chars().count())
            .collect();
        for row in &self.rows {
            for (index, cell) in row.iter().enumerate().take(columns) {
                widths[index] = widths[index].max(cell.chars().count());
            }
        }
        // Widen the last column of a group whose title does not fit.
        let mut first = 0;
        for (title, span) in &self.groups {
            let span_width: usize =
                widths[first..first + span].iter().sum::<usize>() + 2 * (span - 1);
            let missing = title.chars().count().saturating_sub(span_width);
            widths[first + span - 1] += missing;
            first += span;
        }
        if !self.groups.is_empty() {
            let mut line = String::new();
            let mut first = 0;
            for (title, span) in &self.groups {
                let width: usize =
                    widths[first..first + span].iter().sum::<usize>() + 2 * (span - 1);
                if first > 0 {
                    line.push_str("  ");
                }
                let _ = write!(line, "{title:^width$}");
                first += span;
            }
            let _ = writeln!(out, "  {}", line.trim_end());
        }
        let render_row = |cells: &[String], out: &mut String| {
            let mut line = String::new();
            for (index, width) in widths.iter().enumerate() {
                let cell = cells.get(index).map_or("", String::as_str);
                if index > 0 {
                    line.push_str("  ");
                }
                if index == 0 {
                    let _ = write!(line, "{cell:<width$}");
                } else {
                    let _ = write!(line, "{cell:>width$}");
                }
            }
            let _ = writeln!(out, "  {}", line.trim_end());
        };
        render_row(&self.header, out);
        let rule: Vec<String> = widths.iter().map(|width| "-".repeat(*width)).collect();
        render_row(&rule, out);
        for row in &self.rows {
            render_row(row, out);
        }
    }
}

/// The whole report for standard output.
pub(crate) fn table(results: &Results) -> String {
    let mut out = String::new();
    header(results, &mut out);
    if !results.throughput.is_empty() {
        throughput_table(results, &mut out);
    }
    if !results.latency.is_empty() {
        latency_table(results, &mut out);
    }
    if !results.loss.is_empty() {
        loss_table(results, &mut out);
    }
    if !results.fanout.is_empty() {
        fanout_table(results, &mut out);
    }
    if !results.idle.is_empty() {
        idle_table(results, &mut out);
    }
    if !results.failures.is_empty() {
        let _ = writeln!(out, "\nFailed runs (not counted above)");
        for failure in &results.failures {
            let _ = writeln!(
                out,
                "  {} {} ({}): {}",
                failure.section.name(),
                failure.system,
                failure.point,
                failure.message
            );
        }
    }
    out
}

fn header(results: &Results, out: &mut String) {
    let meta = &results.meta;
    let _ = writeln!(
        out,
        "filebus bench ({} run), {}: {} CPUs, Linux {}, scratch in {} ({}), {} s,\n  \
         load average {} at the start and {} at the end (other work on the machine adds noise)",
        if meta.quick { "quick" } else { "full" },
        meta.started,
        meta.cpus,
        meta.kernel,
        meta.scratch_parent.display(),
        meta.filesystem,
        sig(meta.seconds),
        sig(meta.load.0),
        sig(meta.load.1),
    );
    let width = meta
        .implementations
        .iter()
        .map(|implementation| implementation.name.len())
        .max()
        .unwrap_or(0);
    for implementation in &meta.implementations {
        let _ = writeln!(
            out,
            "  {:width$}  {}{}; --sleep-interval {} for latency and loss, its default elsewhere",
            implementation.name,
            implementation.program.display(),
            if implementation.is_reference {
                " (reference)"
            } else if implementation.is_floor {
                " (the protocol floor: only the protocol's system calls per chunk)"
            } else {
                ""
            },
            format_seconds(implementation.low_latency_interval),
        );
    }
    if meta.baselines {
        let _ = writeln!(
            out,
            "  baselines: cat|cat (throughput, latency), tee into named FIFOs read by cat (loss, fan-out)"
        );
    }
}

fn throughput_table(results: &Results, out: &mut String) {
    let plan = &results.meta.plan;
    let _ = writeln!(
        out,
        "\n1. Lossless throughput: median of {} runs, each up to {} or {} s of input after a \
         one-block warm-up,\n   every byte checked; default --sleep-interval. MB/s = 10^6 \
         bytes/s; chunks/s = bytes / block size.",
        plan.repeat,
        bytes_label(plan.throughput_bytes),
        sig(plan.throughput_time.as_secs_f64())
    );
    let systems = ordered_systems(results.throughput.iter().map(|point| point.system.as_str()));
    let floor = floor_name(results);
    let compared = |system: &str| floor.is_some_and(|floor| floor != system) && !is_pipe(system);
    let median = |system: &str, block: usize| {
        let point = results
            .throughput
            .iter()
            .find(|point| point.system == system && point.block_size == block)?;
        Summary::of(point.runs.iter().map(|run| run.mb_per_s())).map(|s| s.median)
    };
    let mut header = vec!["block size"];
    let mut groups = vec![(String::new(), 1)];
    for system in &systems {
        if is_pipe(system) {
            header.push("MB/s");
            groups.push(((*system).to_owned(), 1));
        } else if compared(system) {
            header.extend(["MB/s", "chunks/s", "of floor"]);
            groups.push(((*system).to_owned(), 3));
        } else {
            header.extend(["MB/s", "chunks/s"]);
            groups.push(((*system).to_owned(), 2));
        }
    }
    let mut table = Table::new(&header);
    table.groups = groups;
    for &block in &plan.block_sizes {
        let mut cells = vec![bytes_label(block as u64)];
        let floor_median = floor.and_then(|floor| median(floor, block));
        for system in &systems {
            match median(system, block) {
                Some(median) => {
                    cells.push(sig(median));
                    if !is_pipe(system) {
                        cells.push(sig(median * 1e6 / block as f64));
                    }
                    if compared(system) {
                        cells.push(percent_of(Some(median), floor_median));
                    }
                }
                None => {
                    cells.push("failed".into());
                    if !is_pipe(system) {
                        cells.push("-".into());
                    }
                    if compared(system) {
                        cells.push("-".into());
                    }
                }
            }
        }
        table.row(cells);
    }
    table.render(out);
    if let Some(floor) = floor {
        for system in systems.iter().filter(|system| compared(system)) {
            let points: Vec<String> = plan
                .block_sizes
                .iter()
                .filter_map(|&block| {
                    let (ours, floor) = (median(system, block)?, median(floor, block)?);
                    Some(format!(
                        "{} with {} blocks ({} against {} MB/s)",
                        percent_of(Some(ours), Some(floor)),
                        bytes_label(block as u64),
                        sig(ours),
                        sig(floor)
                    ))
                })
                .collect();
            if !points.is_empty() {
                let _ = writeln!(
                    out,
                    "  {system} reaches, of what the protocol allows here (the floor's MB/s): {}",
                    points.join(", ")
                );
            }
        }
    }
    let cpu_median = |system: &str, block: usize| {
        let point = results
            .throughput
            .iter()
            .find(|point| point.system == system && point.block_size == block)?;
        Summary::of(point.runs.iter().filter_map(|run| run.cpu_ns_per_chunk)).map(|s| s.median)
    };
    for system in systems.iter().filter(|system| !is_pipe(system)) {
        let points: Vec<String> = plan
            .block_sizes
            .iter()
            .filter_map(|&block| {
                let cpu = cpu_median(system, block)?;
                let of_floor = floor
                    .filter(|_| compared(system))
                    .and_then(|floor| cpu_median(floor, block))
                    .map(|floor_cpu| format!(" ({})", times(Some(cpu), Some(floor_cpu))))
                    .unwrap_or_default();
                Some(format!(
                    "{} {}{of_floor}",
                    bytes_label(block as u64),
                    sig(cpu / 1e3)
                ))
            })
            .collect();
        if !points.is_empty() {
            let _ = writeln!(
                out,
                "  {system}: CPU per chunk, producer and consumer, user + system, microseconds{}: {}",
                if compared(system) {
                    " (x the floor's)"
                } else {
                    ""
                },
                points.join(", ")
            );
        }
    }
    let rss: Vec<String> = systems
        .iter()
        .filter_map(|system| {
            let point = results
                .throughput
                .iter()
                .find(|point| point.system == *system && point.block_size == 1 << 20)?;
            let producer = point
                .runs
                .iter()
                .filter_map(|run| run.producer_rss_kib)
                .max()?;
            let consumer = point
                .runs
                .iter()
                .filter_map(|run| run.consumer_rss_kib)
                .max()?;
            Some(format!("{system} {} / {}", mib(producer), mib(consumer)))
        })
        .collect();
    if !rss.is_empty() {
        let _ = writeln!(
            out,
            "  peak RSS with 1 MiB blocks, producer / consumer, MiB: {}",
            rss.join("; ")
        );
    }
}

fn latency_table(results: &Results, out: &mut String) {
    let plan = &results.meta.plan;
    let points: Vec<String> = plan
        .latency_points
        .iter()
        .map(|point| {
            format!(
                "{} at {}/s ({})",
                point.records,
                point.rate,
                point.options_name()
            )
        })
        .collect();
    let _ = writeln!(
        out,
        "\n2. Latency from the producer's stdin to the consumer's stdout, in microseconds: \
         records of {} bytes,\n   {}; one consumer, block size 4096; timestamps taken by the \
         benchmark on the monotonic clock.",
        plan.latency_record_size,
        points.join(", ")
    );
    let floor = floor_name(results);
    let mut header = vec![
        "records/s",
        "system",
        "mode",
        "--sleep-interval",
        "delivered",
    ];
    header.extend(QUANTILES.iter().map(|(_, name)| *name));
    header.push("max");
    if floor.is_some() {
        header.extend(["p50 x floor", "p99 x floor"]);
    }
    let mut table = Table::new(&header);
    let mut outcomes: Vec<&crate::latency::Outcome> = results.latency.iter().collect();
    // Each point's rows together, in the plan's order; in a point each mode's
    // rows together, the floor's after the others.
    let point_rank = |outcome: &crate::latency::Outcome| {
        plan.latency_points
            .iter()
            .position(|point| *point == outcome.point)
    };
    outcomes.sort_by_key(|outcome| {
        (
            point_rank(outcome),
            mode_rank(outcome.mode),
            Some(outcome.system.as_str()) == floor,
        )
    });
    let floor_outcome = |of: &crate::latency::Outcome| {
        results.latency.iter().find(|outcome| {
            Some(outcome.system.as_str()) == floor
                && outcome.mode == of.mode
                && outcome.point == of.point
                && outcome.delivered > 0
        })
    };
    let mut previous_point = None;
    for outcome in outcomes {
        let first_of_point = previous_point != Some(outcome.point);
        previous_point = Some(outcome.point);
        let mut cells = vec![
            if first_of_point {
                group_digits(outcome.point.rate)
            } else {
                String::new()
            },
            outcome.system.clone(),
            mode_name(outcome.mode).to_owned(),
            outcome.sleep_interval.map_or_else(
                || {
                    if outcome.mode.is_some() {
                        "default".to_owned()
                    } else {
                        "-".to_owned()
                    }
                },
                format_seconds,
            ),
            format!("{}/{}", outcome.delivered, outcome.sent),
        ];
        if outcome.delivered > 0 {
            cells.extend(
                QUANTILES
                    .iter()
                    .map(|(quantile, _)| micros(outcome.histogram.value_at_quantile(*quantile))),
            );
            cells.push(micros(outcome.histogram.max()));
            if floor.is_some() {
                let base = floor_outcome(outcome)
                    .filter(|base| base.system != outcome.system && outcome.mode.is_some());
                for quantile in [0.5, 0.99] {
                    let at = |outcome: &crate::latency::Outcome| {
                        outcome.histogram.value_at_quantile(quantile) as f64
                    };
                    cells.push(times(Some(at(outcome)), base.map(at)));
                }
            }
        }
        table.row(cells);
    }
    table.render(out);
}

fn loss_table(results: &Results, out: &mut String) {
    let plan = &results.meta.plan;
    let _ = writeln!(
        out,
        "\n3. Loss versus rate, every multicast mode: records of {} bytes (one per chunk) for {} s \
         per run; median of {} runs.\n   \
         lossy: plain lossy multicast; history: producer --history {depth}, unnamed consumers \
         catching up from it;\n   \
         named: --history {depth} and consumer --name (lossless, the producer held back); \
         tee+fifos: tee into named FIFOs read by cat.\n   \
         delivered: % of records delivered, over all consumers; achieved: records/s taken by the \
         producer (written\n   into its input); CPU/rec: CPU time of every process (producer \
         and consumers) per record delivered, microseconds.",
        plan.loss_record_size,
        sig(plan.loss_duration.as_secs_f64()),
        plan.repeat,
        depth = plan.history_depth,
    );
    let floor = floor_name(results);
    let labels = ordered_labels(&results.loss, floor);
    let mut header = vec!["records/s", "system"];
    let mut groups = vec![(String::new(), 2)];
    for &consumers in &plan.loss_consumers {
        if floor.is_some() {
            header.extend(["delivered", "of floor", "achieved/s", "CPU/rec", "x floor"]);
            groups.push((consumers_title(consumers), 5));
        } else {
            header.extend(["delivered", "achieved/s", "CPU/rec"]);
            groups.push((consumers_title(consumers), 3));
        }
    }
    let mut table = Table::new(&header);
    table.groups = groups;
    for &rate in &plan.loss_rates {
        for (index, (system, mode)) in labels.iter().enumerate() {
            let mut cells = vec![
                if index == 0 {
                    group_digits(rate)
                } else {
                    String::new()
                },
                label(system, *mode),
            ];
            for &consumers in &plan.loss_consumers {
                let point = find_point(&results.loss, system, *mode, consumers, rate);
                let [delivered, achieved, per_record] = match point {
                    Some(point) => point_cells(point),
                    None => ["failed".into(), "-".into(), "-".into()],
                };
                match floor {
                    Some(floor) => {
                        let [delivered_of, per_record_of] =
                            floor_cells(point, &results.loss, floor, consumers, rate);
                        cells.extend([
                            delivered,
                            delivered_of,
                            achieved,
                            per_record,
                            per_record_of,
                        ]);
                    }
                    None => cells.extend([delivered, achieved, per_record]),
                }
            }
            table.row(cells);
        }
    }
    table.render(out);
    if floor.is_some() {
        let _ = writeln!(
            out,
            "  of floor: delivered over the floor's in the same mode; x floor: CPU/rec over the \
             floor's (medians)."
        );
    }
    let mut anomalies = Vec::new();
    let mut onsets = Vec::new();
    for (system, mode) in &labels {
        for &consumers in &plan.loss_consumers {
            let points: Vec<&Point> = results
                .loss
                .iter()
                .filter(|point| {
                    point.system == *system && point.mode == *mode && point.consumers == consumers
                })
                .collect();
            let (mut duplicates, mut torn, mut out_of_order) = (0, 0, 0);
            for run in points.iter().flat_map(|point| point.runs.iter()) {
                let total = run.total();
                duplicates += total.duplicates;
                torn += total.torn;
                out_of_order += total.out_of_order;
            }
            let name = label(system, *mode);
            anomalies.push(format!(
                "{name} x{consumers} {duplicates}/{torn}/{out_of_order}"
            ));
            if let Some(onset) = loss_onset(&points) {
                onsets.push(format!("    {name} x{consumers}: {onset}"));
            }
        }
    }
    let _ = writeln!(
        out,
        "  duplicated / torn / out-of-order records, all runs: {}",
        anomalies.join("; ")
    );
    if !onsets.is_empty() {
        let _ = writeln!(
            out,
            "  where loss begins (every record to every consumer in every run), and where the \
             producer is held back\n  (the median rate achieved under 95% of the rate asked):"
        );
        for onset in onsets {
            let _ = writeln!(out, "{onset}");
        }
    }
}

fn fanout_table(results: &Results, out: &mut String) {
    let plan = &results.meta.plan;
    let _ = writeln!(
        out,
        "\n4. Fan-out: {} records/s of {} bytes for {} s per run, 1 to {} consumers; median of {} \
         runs. Filebus programs\n   with their default --block-size and --sleep-interval \
         (records that keep coming are gathered into chunks);\n   named: --history {} and \
         consumer --name. CPU: % of one CPU over the run, producer and all consumers;\n   \
         peak RSS: the producer's, and the consumers' added up, MiB.",
        group_digits(plan.fanout_rate),
        plan.fanout_record_size,
        sig(plan.fanout_duration.as_secs_f64()),
        plan.fanout_consumers.iter().max().copied().unwrap_or(0),
        plan.repeat,
        plan.history_depth,
    );
    let floor = floor_name(results);
    let labels = ordered_labels(&results.fanout, floor);
    let mut header = vec![
        "consumers",
        "system",
        "delivered",
        "achieved/s",
        "producer CPU",
        "consumers CPU",
        "CPU/rec us",
        "peak RSS",
    ];
    if floor.is_some() {
        header.extend(["delivered of floor", "CPU/rec x floor"]);
    }
    let mut table = Table::new(&header);
    for &consumers in &plan.fanout_consumers {
        for (index, (system, mode)) in labels.iter().enumerate() {
            let mut cells = vec![
                if index == 0 {
                    consumers.to_string()
                } else {
                    String::new()
                },
                label(system, *mode),
            ];
            match find_point(&results.fanout, system, *mode, consumers, plan.fanout_rate) {
                Some(point) => {
                    let [delivered, achieved, per_record] = point_cells(point);
                    let cpu = |role: Option<Role>| {
                        Summary::of(point.runs.iter().filter_map(|run| run.cpu_percent(role)))
                            .map_or_else(|| "-".to_owned(), |s| format!("{}%", sig(s.median)))
                    };
                    let rss = |pick: fn(&crate::loss::Run) -> u64| {
                        point.runs.iter().map(pick).max().map_or(0, |kib| kib)
                    };
                    cells.extend([
                        delivered,
                        achieved,
                        cpu(Some(Role::Producer)),
                        cpu(Some(Role::Consumer)),
                        per_record,
                        format!(
                            "{} / {}",
                            mib(rss(|run| run.cost.producer_rss_kib)),
                            mib(rss(|run| run.cost.consumers_rss_kib))
                        ),
                    ]);
                    if let Some(floor) = floor {
                        cells.extend(floor_cells(
                            Some(point),
                            &results.fanout,
                            floor,
                            consumers,
                            plan.fanout_rate,
                        ));
                    }
                }
                None => cells.push("failed".into()),
            }
            table.row(cells);
        }
    }
    table.render(out);
    if let Some(&most) = plan.fanout_consumers.iter().max()
        && let Some(line) = fanout_ratios(results, &labels, most)
    {
        let _ = writeln!(out, "  {line}");
    }
}

/// "at 64 consumers, CPU of all processes against tee+fifos: ours lossy
/// 0.48x, ours named 0.52x", from the medians.
fn fanout_ratios(
    results: &Results,
    labels: &[(&str, Option<Mode>)],
    consumers: usize,
) -> Option<String> {
    let rate = results.meta.plan.fanout_rate;
    let total = |system: &str, mode: Option<Mode>| {
        let point = find_point(&results.fanout, system, mode, consumers, rate)?;
        Summary::of(point.runs.iter().filter_map(|run| run.cpu_percent(None))).map(|s| s.median)
    };
    let tee = total(TEE_FIFOS, None).filter(|cpu| *cpu > 0.0)?;
    let ratios: Vec<String> = labels
        .iter()
        .filter(|(system, _)| *system != TEE_FIFOS)
        .filter_map(|(system, mode)| {
            let cpu = total(system, *mode)?;
            Some(format!("{} {}x", label(system, *mode), sig(cpu / tee)))
        })
        .collect();
    (!ratios.is_empty()).then(|| {
        format!(
            "at {consumers} consumers, CPU of all processes against {TEE_FIFOS} (median over \
             median): {}",
            ratios.join(", ")
        )
    })
}

/// "1 consumer", "4 consumers".
fn consumers_title(consumers: usize) -> String {
    if consumers == 1 {
        "1 consumer".into()
    } else {
        format!("{consumers} consumers")
    }
}

/// The (system, mode) pairs of `points`, each mode's together (in order
/// of first appearance, the floor's after the others'), baselines last.
fn ordered_labels<'a>(points: &'a [Point], floor: Option<&str>) -> Vec<(&'a str, Option<Mode>)> {
    let mut labels: Vec<(&str, Option<Mode>)> = Vec::new();
    for point in points {
        let pair = (point.system.as_str(), point.mode);
        if !labels.contains(&pair) {
            labels.push(pair);
        }
    }
    labels
        .sort_by_key(|(system, mode)| (is_pipe(system), mode_rank(*mode), Some(*system) == floor));
    labels
}

/// Where a mode's rows go in a table: lossy, history, named, lossless,
/// then the pipes.
fn mode_rank(mode: Option<Mode>) -> u8 {
    match mode {
        Some(Mode::Lossy) => 0,
        Some(Mode::History(_)) => 1,
        Some(Mode::Named(_)) => 2,
        Some(Mode::Lossless) => 3,
        None => 4,
    }
}

/// The name of the protocol floor, if it was measured.
fn floor_name(results: &Results) -> Option<&str> {
    results
        .meta
        .floor()
        .map(|implementation| implementation.name.as_str())
}

/// "75%": `value` as a percentage of `floor`; "-" without both.
fn percent_of(value: Option<f64>, floor: Option<f64>) -> String {
    match (value, floor) {
        (Some(value), Some(floor)) => fraction(value, floor)
            .map_or_else(|| "-".to_owned(), |f| format!("{}%", sig(f * 100.0))),
        _ => "-".into(),
    }
}

/// "1.35x": `value` as a multiple of `floor`; "-" without both.
fn times(value: Option<f64>, floor: Option<f64>) -> String {
    match (value, floor) {
        (Some(value), Some(floor)) => {
            fraction(value, floor).map_or_else(|| "-".to_owned(), |f| format!("{}x", sig(f)))
        }
        _ => "-".into(),
    }
}

/// The delivered share as a percentage of the floor's, and the CPU per
/// record as a multiple of the floor's, at the floor's point of the same
/// mode (medians); "-" for the floor itself and the baselines.
fn floor_cells(
    point: Option<&Point>,
    points: &[Point],
    floor: &str,
    consumers: usize,
    rate: u64,
) -> [String; 2] {
    let Some(point) = point.filter(|point| point.system != floor && point.mode.is_some()) else {
        return ["-".into(), "-".into()];
    };
    let base = find_point(points, floor, point.mode, consumers, rate);
    let delivered = |point: &Point| {
        Summary::of(point.runs.iter().map(|run| run.delivered_fraction())).map(|s| s.median)
    };
    let per_record = |point: &Point| {
        Summary::of(point.runs.iter().filter_map(|run| run.cpu_ns_per_record())).map(|s| s.median)
    };
    [
        percent_of(delivered(point), base.and_then(delivered)),
        times(per_record(point), base.and_then(per_record)),
    ]
}

fn find_point<'a>(
    points: &'a [Point],
    system: &str,
    mode: Option<Mode>,
    consumers: usize,
    rate: u64,
) -> Option<&'a Point> {
    points
        .iter()
        .find(|point| {
            point.system == system
                && point.mode == mode
                && point.consumers == consumers
                && point.rate == rate
        })
        .filter(|point| !point.runs.is_empty())
}

/// Delivered %, rate achieved and CPU microseconds per record delivered, as
/// medians.
fn point_cells(point: &Point) -> [String; 3] {
    let delivered = Summary::of(point.runs.iter().map(|run| run.delivered_fraction()));
    let achieved = Summary::of(point.runs.iter().map(|run| run.achieved_rate));
    let per_record = Summary::of(point.runs.iter().filter_map(|run| run.cpu_ns_per_record()));
    [
        delivered.map_or_else(|| "-".to_owned(), |s| percent_text(s.median)),
        achieved.map_or_else(|| "-".to_owned(), |s| sig(s.median)),
        per_record.map_or_else(|| "-".to_owned(), |s| sig(s.median / 1e3)),
    ]
}

/// "8.1k", "950".
fn short_rate(rate: f64) -> String {
    if rate >= 1000.0 {
        format!("{}k", sig(rate / 1000.0))
    } else {
        sig(rate)
    }
}

fn idle_table(results: &Results, out: &mut String) {
    let plan = &results.meta.plan;
    let window = results
        .idle
        .first()
        .map_or(plan.idle_window.as_secs_f64(), |m| m.window_seconds);
    let exact = results.idle.iter().all(|m| m.cpu_exact);
    let _ = writeln!(
        out,
        "\n5. Idle cost: producer (input open, nothing written) and consumer, {} blocks, default \
         --sleep-interval,\n   after {} chunks went through; one window of {} s for all. CPU \
         time from {}; wake-ups = voluntary\n   context switches, all threads; peak RSS = VmHWM \
         (or ru_maxrss if larger), whole life. Then the same window in busy directories:\n   \
         a thread of the bench creates, renames and deletes files of other names in each bus's \
         directory.",
        bytes_label(plan.idle_block_size as u64),
        plan.idle_warm_up_chunks,
        sig(window),
        if exact {
            "schedstat (ns)"
        } else {
            "utime+stime (clock ticks)"
        }
    );
    let mut table = Table::new(&[
        "system",
        "mode",
        "role",
        "directory",
        "CPU ms",
        "CPU ms/10 s",
        "wake-ups/s",
        "preempted/s",
        "peak RSS MiB",
    ]);
    for m in &results.idle {
        table.row(idle_cells(m));
    }
    table.render(out);
    if floor_name(results).is_some() {
        let _ = writeln!(
            out,
            "  The floor idles blocked in read(2): its figures are shown, but nothing is given as \
             a fraction of them."
        );
    }
}

fn idle_cells(m: &Measurement) -> Vec<String> {
    vec![
        m.system.clone(),
        m.mode.name().to_owned(),
        role_name(m.role).to_owned(),
        m.busy_directory.map_or("quiet".to_owned(), |files| {
            format!("{} files/s", short_rate(files))
        }),
        sig(m.cpu_ns as f64 / 1e6),
        sig(m.cpu_ms_per_10s()),
        sig(m.wakeups_per_s()),
        sig(m.involuntary as f64 / m.window_seconds),
        mib(m.peak_rss_kib),
    ]
}

/// Systems in order of first appearance, baselines last.
fn ordered_systems<'a>(names: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut systems: Vec<&str> = Vec::new();
    for name in names {
        if !systems.contains(&name) {
            systems.push(name);
        }
    }
    systems.sort_by_key(|name| is_pipe(name));
    systems
}

/// "loss begins between 300 and 1,000 records/s", from the points of one
/// system, mode and consumer count, with where the producer was held back
/// (the median rate achieved under 95% of the rate asked). A point is
/// lossless when every consumer got every record in every run.
fn loss_onset(points: &[&Point]) -> Option<String> {
    let mut points: Vec<&&Point> = points
        .iter()
        .filter(|point| !point.runs.is_empty())
        .collect();
    if points.is_empty() {
        return None;
    }
    points.sort_by_key(|point| point.rate);
    let lossless = |point: &Point| {
        point
            .runs
            .iter()
            .all(|run| run.worst_consumer_fraction() >= 1.0)
    };
    let first_loss = points.iter().position(|point| !lossless(point));
    let mut text = match first_loss {
        None => format!(
            "no loss up to {} records/s, the highest rate tried",
            group_digits(points[points.len() - 1].rate)
        ),
        Some(0) => format!(
            "loss already at {} records/s, the lowest rate tried",
            group_digits(points[0].rate)
        ),
        Some(index) => format!(
            "loss begins between {} and {} records/s",
            group_digits(points[index - 1].rate),
            group_digits(points[index].rate)
        ),
    };
    let blocker = match points[0].mode {
        None => Some("tee blocks"),
        Some(mode) if mode.holds_producer_back() => Some("named consumers hold the producer back"),
        Some(_) => None,
    };
    let held_back = points.iter().find_map(|point| {
        let achieved = Summary::of(point.runs.iter().map(|run| run.achieved_rate))?.median;
        (achieved < 0.95 * point.rate as f64).then_some((point.rate, achieved))
    });
    match (blocker, held_back) {
        (Some(blocker), Some((rate, achieved))) => {
            let _ = write!(
                text,
                "; {blocker} instead of dropping records: {}/s achieved at {} asked",
                short_rate(achieved),
                group_digits(rate)
            );
        }
        (Some(blocker), None) => {
            let _ = write!(
                text,
                "; {blocker} instead of dropping records, and kept up with every rate tried"
            );
        }
        (None, Some((rate, achieved))) => {
            let _ = write!(
                text,
                "; the producer fell behind at {} asked ({}/s achieved)",
                group_digits(rate),
                short_rate(achieved)
            );
        }
        (None, None) => {}
    }
    Some(text)
}
