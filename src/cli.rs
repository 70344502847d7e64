//! The command line: the reference implementation's options and defaults,
//! accepted before or after the subcommand.

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::LazyLock;
use std::time::Duration;

use clap::ValueEnum;
use clap::{ArgAction, Args, Parser, Subcommand};
use filebus_bench::floor::{FloorOptions, FloorSide};
use filebus_bench::{BenchOptions, Implementation, Section};
use filebus_core::{
    BusOptions, ConsumerOptions, DEFAULT_BLOCK_SIZE, DEFAULT_MAX_CHUNK_SIZE,
    DEFAULT_SLEEP_INTERVAL, Format, InputMethod, MAX_HISTORY_DEPTH, OutputMethod, ProducerOptions,
};

/// The exit statuses, shown by --help and in the manual page.
pub const EXIT_STATUS: &str = "Exit status:
  0    success: end of input (producer), end-of-stream chunk taken (lossless consumer)
  1    a runtime error, printed as one line on stderr
  2    a bad command line, printed as one line on stderr
  130  ended by SIGINT; 143 by SIGTERM; 129 by SIGHUP (temporary files removed)
  141  a consumer whose reader went away (SIGPIPE, like cat)";

/// A user space multicast named pipe implementation backed by a regular file.
///
/// A producer publishes its standard input in chunks at FILE; every consumer
/// writes the chunks it sees to its standard output. Lossy multicast by
/// default; lossless unicast with --back-pressure on both sides.
#[derive(Debug, Parser)]
#[command(name = "filebus", version, max_term_width = 100, after_help = EXIT_STATUS)]
pub struct Cli {
    /// Enable the lossless back pressure protocol (unconsumed chunks make producers wait)
    #[arg(long = "back-pressure", visible_alias = "lossless", global = true)]
    pub back_pressure: bool,

    /// Maximum chunk size in bytes, at most 1 GiB (the reference's default is
    /// 4096; readers of either take chunks of any size)
    #[arg(long, value_name = "N", default_value_t = DEFAULT_BLOCK_SIZE, value_parser = parse_block_size,
          allow_hyphen_values = true, global = true)]
    pub block_size: NonZeroUsize,

    /// Disable filesystem event monitoring (poll every --sleep-interval instead)
    #[arg(long, global = true)]
    pub no_file_monitoring: bool,

    /// Path of the bus file (producers update it by atomic rename)
    #[arg(long, value_name = "FILE", global = true)]
    pub filename: Option<PathBuf>,

    /// Longest wait, in seconds, before input that keeps coming is published
    /// (input after a pause of a tenth of it goes out at once); the polling
    /// interval when file events are unavailable
    #[arg(long, value_name = "N", default_value = DEFAULT_SLEEP_INTERVAL_TEXT.as_str(),
          value_parser = parse_sleep_interval,
          allow_hyphen_values = true, global = true)]
    pub sleep_interval: Duration,

    /// How chunks are stored at FILE: raw bytes, or a tar archive with one
    /// member `from_server` (filebus 0.0.x) carrying sequence and time in PAX records
    #[arg(
        long,
        value_enum,
        value_name = "FORMAT",
        default_value = Format::default().name(),
        global = true
    )]
    pub format: FormatArg,

    /// Consumers refuse chunks larger than N bytes (a huge file put at FILE)
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_CHUNK_SIZE, global = true)]
    pub max_chunk_size: u64,

    /// More messages on stderr: -v information, -vv debugging (warnings and
    /// errors are always shown)
    #[arg(short, long, action = ArgAction::Count, global = true)]
    pub verbose: u8,

    /// Fewer messages on stderr: errors only, no warnings
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    /// The reference implementation to behave as, for scripts written for
    /// filebus 0.3.5: `python` changes nothing (this program is a third
    /// implementation, on the same protocol as both); `bash` makes producers
    /// end chunks only at newlines, as the bash variant does (like --lines)
    #[arg(
        long = "impl",
        visible_alias = "implementation",
        value_enum,
        value_name = "IMPL"
    )]
    pub reference_impl: Option<ReferenceImpl>,

    /// How producers fill chunk files
    #[arg(
        long,
        value_enum,
        value_name = "METHOD",
        default_value = InputMethod::default().name(),
        global = true,
        help_heading = "Tuning"
    )]
    pub input_method: InputMethodArg,

    /// How consumers write chunks to standard output
    #[arg(
        long,
        value_enum,
        value_name = "METHOD",
        default_value = OutputMethod::default().name(),
        global = true,
        help_heading = "Tuning"
    )]
    pub output_method: OutputMethodArg,

    /// Build chunks in named temporary files instead of anonymous O_TMPFILEs
    #[arg(long, global = true, help_heading = "Tuning")]
    pub named_temp_files: bool,

    #[command(subcommand)]
    pub command: Command,
}

/// The two sides of a bus.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Connect the producer side of the stream: publish standard input
    Producer {
        /// Blocking read from input (clear the O_NONBLOCK flag)
        #[arg(long)]
        blocking_read: bool,

        /// Keep the last N chunks readable in FILE.history/ (hard links, no
        /// copy), so consumers catch up and named consumers lose nothing;
        /// lossy mode only. The depth belongs to the bus: every producer on
        /// it keeps the depth it was created with
        #[arg(long, value_name = "N",
              value_parser = clap::value_parser!(u64).range(1..=MAX_HISTORY_DEPTH))]
        history: Option<u64>,

        #[command(flatten)]
        records: RecordOptions,
    },
    /// Connect the consumer side of the stream: write chunks to standard output
    Consumer {
        /// Print a summary on stderr at exit and on SIGUSR1: chunks and bytes
        /// emitted, chunks missed, unstamped chunks, publish-to-emit latency
        #[arg(long)]
        stats: bool,

        /// Keep a cursor as NAME in FILE.consumers/: resume after the last
        /// chunk written when started again, and hold producers with
        /// history back until each chunk is written (lossless multicast)
        #[arg(long, value_name = "NAME", value_parser = parse_consumer_name)]
        name: Option<String>,

        /// On a bus with history, start K chunks back (as many as it holds),
        /// like tail -n K [default: 1, the chunk at FILE]
        #[arg(long, value_name = "K")]
        last: Option<u64>,

        /// On a bus with history, go on after an end-of-stream chunk instead
        /// of exiting 0 (like tail -f rather than cat)
        #[arg(long)]
        follow: bool,
    },
    /// Measure throughput, latency, loss in every multicast mode, the cost of
    /// fan-out and idle cost of filebus programs side by side, with real
    /// producer and consumer processes
    ///
    /// Results go to standard output as tables, and optionally to a CSV or
    /// JSON file and SVG plots; progress goes to standard error. The
    /// benchmark chooses the bus options (--filename, --block-size...) of
    /// each run itself.
    Bench(BenchArgs),
    /// Show a bus at a glance: its chunk (format, size, age, sequence number)
    /// and whether its lock is held; with --watch, a line per second with the
    /// publish rate
    Stat {
        /// The bus file [default: the --filename option]
        #[arg(value_name = "FILE")]
        file: Option<PathBuf>,

        /// Print a line per second with chunks/s and bytes/s, until interrupted
        #[arg(long)]
        watch: bool,

        /// With --watch, stop after N lines
        #[arg(long, value_name = "N", requires = "watch")]
        count: Option<u64>,

        /// Print JSON (one object, or one per line with --watch)
        #[arg(long)]
        json: bool,
    },
    /// Print a shell completion script for bash, zsh, fish, elvish or powershell
    Completions {
        /// The shell
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), for `man -l -` or a man directory
    Man,
}

/// `filebus bench-floor`: the benchmark's protocol floor, a minimal filebus
/// that makes only the protocol's system calls per chunk, which `bench`
/// runs beside the programs it measures. Not a program to use: it has a
/// parser of its own, outside [`Cli`], so that no help, manual page or
/// completion script shows it. It takes the bus options the benchmark gives
/// every implementation, before the side.
#[derive(Debug, Parser)]
#[command(name = "filebus bench-floor", max_term_width = 100)]
pub struct FloorCli {
    /// Lossless unicast
    #[arg(long = "back-pressure", visible_alias = "lossless")]
    pub back_pressure: bool,

    /// The most bytes read from standard input per chunk
    #[arg(long, value_name = "N", default_value_t = DEFAULT_BLOCK_SIZE, value_parser = parse_block_size)]
    pub block_size: NonZeroUsize,

    /// Path of the bus file
    #[arg(long, value_name = "FILE")]
    pub filename: PathBuf,

    /// 0: each read of standard input is a chunk; otherwise input that
    /// keeps coming is gathered for up to this long, as ours does
    #[arg(long, value_name = "N", default_value = DEFAULT_SLEEP_INTERVAL_TEXT.as_str(),
          value_parser = parse_sleep_interval)]
    pub sleep_interval: Duration,

    #[command(subcommand)]
    pub side: FloorSideArg,
}

impl FloorCli {
    /// The floor's options.
    pub fn options(&self) -> FloorOptions {
        FloorOptions {
            bus: self.filename.clone(),
            lossless: self.back_pressure,
            block_size: self.block_size.get(),
            sleep_interval: self.sleep_interval,
            side: match &self.side {
                FloorSideArg::Producer { history } => FloorSide::Producer { history: *history },
                FloorSideArg::Consumer { name } => FloorSide::Consumer { name: name.clone() },
            },
        }
    }
}

/// The sides of the benchmark's floor, with the options the benchmark
/// gives them.
#[derive(Debug, Subcommand)]
pub enum FloorSideArg {
    /// Publish standard input, one chunk per read
    Producer {
        /// Keep the last N chunks in FILE.history/
        #[arg(long, value_name = "N",
              value_parser = clap::value_parser!(u64).range(1..=MAX_HISTORY_DEPTH))]
        history: Option<u64>,
    },
    /// Write the chunks to standard output
    Consumer {
        /// Keep a cursor as NAME in FILE.consumers/
        #[arg(long, value_name = "NAME", value_parser = parse_consumer_name)]
        name: Option<String>,
    },
}

/// The options of `filebus bench`.
#[derive(Debug, Args)]
#[command(next_help_heading = "Benchmark")]
pub struct BenchArgs {
    /// A filebus-compatible program to measure, as [NAME=]PROGRAM; repeatable
    /// [default: this program, named "ours"]. It runs with --sleep-interval 0
    /// in the latency and loss sections
    #[arg(long = "implementation", value_name = "[NAME=]PROGRAM")]
    pub implementations: Vec<String>,

    /// A polling reference to compare with, such as the Python filebus 0.3.5,
    /// as [NAME=]PROGRAM; repeatable [default name: "reference"]
    #[arg(long = "reference", value_name = "[NAME=]PROGRAM")]
    pub references: Vec<String>,

    /// The --sleep-interval references get in the latency and loss sections
    #[arg(long, value_name = "SECONDS", default_value = "0.001", value_parser = parse_sleep_interval)]
    pub reference_sleep_interval: Duration,

    /// Leave out the baselines: `cat | cat` and `tee` into named FIFOs
    #[arg(long)]
    pub no_baselines: bool,

    /// Leave out the protocol floor: the benchmark's own minimal filebus,
    /// which makes only the protocol's system calls per chunk, and against
    /// which every figure is otherwise given as a fraction
    #[arg(long)]
    pub no_floor: bool,

    /// Fewer points, less data and shorter windows: about a minute
    #[arg(long)]
    pub quick: bool,

    /// The sections to run, comma-separated
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        value_name = "SECTIONS",
        default_value = "throughput,latency,loss,fan-out,idle"
    )]
    pub sections: Vec<SectionArg>,

    /// Runs of each throughput, loss and fan-out point, whose median is reported
    /// [default: 5, with --quick 3]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub repeat: Option<u32>,

    /// Also write the results to FILE, as CSV or JSON according to its
    /// extension; repeatable
    #[arg(long = "output", value_name = "FILE")]
    pub outputs: Vec<PathBuf>,

    /// Write SVG plots (throughput.svg, latency.svg, loss.svg, loss-cpu.svg,
    /// loss-rate.svg, fan-out.svg) into DIR
    #[arg(long, value_name = "DIR")]
    pub plots: Option<PathBuf>,

    /// Create the scratch directory (buses, FIFOs, logs; removed at the end)
    /// inside DIR [default: $TMPDIR or /tmp]
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,

    #[command(flatten)]
    pub not_for_bench: NotForBench,
}

/// The options of producers and consumers (global: accepted before or after
/// their subcommand), which do not apply to `bench`. Clap copies a global
/// option into every subcommand, for its help too, unless the subcommand has
/// an argument of the same id: so `bench` has a hidden twin of each, parsed
/// the same way (the value goes back to the global one), and refuses them.
#[derive(Debug, Clone, Default)]
pub struct NotForBench {
    /// The options given, as written on the command line ("--block-size").
    pub given: Vec<String>,
}

impl NotForBench {
    /// The hidden twins of the global options, with their ids, names and
    /// parsers.
    fn twins() -> Vec<clap::Arg> {
        use clap::Arg;
        use clap::builder::{EnumValueParser, ValueParser};
        let flag = |id: &'static str, long: &'static str| {
            Arg::new(id).long(long).action(ArgAction::SetTrue)
        };
        let value = |id: &'static str, long: &'static str, parser: ValueParser| {
            let value_name = match long {
                "filename" => "FILE",
                "format" => "FORMAT",
                "input-method" | "output-method" => "METHOD",
                _ => "N",
            };
            Arg::new(id)
                .long(long)
                .value_name(value_name)
                .action(ArgAction::Set)
                .value_parser(parser)
                .allow_hyphen_values(true)
        };
        vec![
            flag("back_pressure", "back-pressure").alias("lossless"),
            value(
                "block_size",
                "block-size",
                ValueParser::new(parse_block_size),
            ),
            flag("no_file_monitoring", "no-file-monitoring"),
            value("filename", "filename", clap::value_parser!(PathBuf)),
            value(
                "sleep_interval",
                "sleep-interval",
                ValueParser::new(parse_sleep_interval),
            ),
            value(
                "format",
                "format",
                EnumValueParser::<FormatArg>::new().into(),
            ),
            value(
                "max_chunk_size",
                "max-chunk-size",
                clap::value_parser!(u64).into(),
            ),
            Arg::new("verbose")
                .short('v')
                .long("verbose")
                .action(ArgAction::Count),
            flag("quiet", "quiet").short('q'),
            value(
                "input_method",
                "input-method",
                EnumValueParser::<InputMethodArg>::new().into(),
            ),
            value(
                "output_method",
                "output-method",
                EnumValueParser::<OutputMethodArg>::new().into(),
            ),
            flag("named_temp_files", "named-temp-files"),
        ]
        .into_iter()
        .map(|arg| arg.hide(true))
        .collect()
    }
}

impl clap::FromArgMatches for NotForBench {
    fn from_arg_matches(matches: &clap::ArgMatches) -> Result<Self, clap::Error> {
        let given = NotForBench::twins()
            .iter()
            .filter(|arg| {
                matches.value_source(arg.get_id().as_str())
                    == Some(clap::parser::ValueSource::CommandLine)
            })
            .filter_map(|arg| arg.get_long().map(|long| format!("--{long}")))
            .collect();
        Ok(NotForBench { given })
    }

    fn update_from_arg_matches(&mut self, matches: &clap::ArgMatches) -> Result<(), clap::Error> {
        *self = NotForBench::from_arg_matches(matches)?;
        Ok(())
    }
}

impl Args for NotForBench {
    fn augment_args(command: clap::Command) -> clap::Command {
        command.args(NotForBench::twins())
    }

    fn augment_args_for_update(command: clap::Command) -> clap::Command {
        NotForBench::augment_args(command)
    }
}

impl BenchArgs {
    /// The benchmark's options, or a message if an implementation is
    /// malformed or an option of producers and consumers was given.
    pub fn options(&self) -> Result<BenchOptions, String> {
        if let Some(option) = self.not_for_bench.given.first() {
            return Err(format!(
                "{option} is an option of producer and consumer; it does not apply to bench, \
                 which sets the bus options of each run itself"
            ));
        }
        let mut implementations = Vec::new();
        if self.implementations.is_empty() {
            let program = std::env::current_exe()
                .map_err(|error| format!("cannot find this program's path: {error}"))?;
            implementations.push(Implementation {
                name: "ours".into(),
                program,
                arguments: Vec::new(),
                low_latency_interval: Duration::ZERO,
                is_reference: false,
                is_floor: false,
            });
        }
        for (index, spec) in self.implementations.iter().enumerate() {
            let default_name = match index {
                0 => "ours".to_owned(),
                n => format!("implementation-{}", n + 1),
            };
            implementations.push(Implementation::parse(spec, &default_name, Duration::ZERO)?);
        }
        for (index, spec) in self.references.iter().enumerate() {
            let default_name = match index {
                0 => "reference".to_owned(),
                n => format!("reference-{}", n + 1),
            };
            let mut reference =
                Implementation::parse(spec, &default_name, self.reference_sleep_interval)?;
            reference.is_reference = true;
            implementations.push(reference);
        }
        if !self.no_floor {
            // The floor is this program's hidden subcommand.
            let program = std::env::current_exe()
                .map_err(|error| format!("cannot find this program's path: {error}"))?;
            implementations.push(Implementation::floor(program));
        }
        Ok(BenchOptions {
            implementations,
            baselines: !self.no_baselines,
            quick: self.quick,
            sections: self
                .sections
                .iter()
                .map(|&section| section.into())
                .collect(),
            repeat: self.repeat,
            outputs: self.outputs.clone(),
            plots: self.plots.clone(),
            scratch_parent: self.dir.clone(),
        })
    }
}

/// Whole records: chunks end only after a delimiter byte.
#[derive(Debug, Clone, Copy, Default, clap::Args)]
#[group(multiple = false)]
pub struct RecordOptions {
    /// End chunks only after this byte, so that no record is split: a
    /// character, an escape (\n, \t, \0, \\) or a hex value such as 0x1e
    #[arg(long, value_name = "BYTE", value_parser = parse_delimiter)]
    pub delimiter: Option<u8>,

    /// Whole lines: the same as --delimiter '\n'
    #[arg(long)]
    pub lines: bool,

    /// Whole NUL-terminated records: the same as --delimiter '\0'
    #[arg(short = 'z', long)]
    pub null: bool,
}

impl RecordOptions {
    /// The delimiter chosen, if any.
    pub fn delimiter(&self) -> Option<u8> {
        match (self.delimiter, self.lines, self.null) {
            (Some(byte), _, _) => Some(byte),
            (None, true, _) => Some(b'\n'),
            (None, false, true) => Some(0),
            (None, false, false) => None,
        }
    }
}

impl Cli {
    /// What producers and consumers share, or a message if `--filename` is
    /// missing.
    fn bus_options(&self) -> Result<BusOptions, String> {
        let path = self
            .filename
            .clone()
            .ok_or("the --filename FILE option is required")?;
        let mut bus = BusOptions::new(path);
        bus.lossless = self.back_pressure;
        bus.format = self.format.into();
        bus.sleep_interval = self.sleep_interval;
        bus.file_monitoring = !self.no_file_monitoring;
        Ok(bus)
    }

    /// The producer's options, checked by the library, or a message saying
    /// what is wrong. The caller makes sure the command is `producer`.
    pub fn producer_options(&self) -> Result<ProducerOptions, String> {
        let Command::Producer {
            blocking_read,
            history,
            records,
        } = self.command
        else {
            return Err("not a producer".into());
        };
        let mut options = ProducerOptions::on(self.bus_options()?);
        options.block_size = self.block_size;
        options.input_method = self.input_method.into();
        options.anonymous_temp = !self.named_temp_files;
        options.delimiter = records
            .delimiter()
            .or((self.reference_impl == Some(ReferenceImpl::Bash)).then_some(b'\n'));
        options.history = history;
        options.blocking_read = blocking_read;
        options.validate().map_err(|error| error.to_string())?;
        Ok(options)
    }

    /// The consumer's options, checked by the library, or a message saying
    /// what is wrong. The caller makes sure the command is `consumer`.
    pub fn consumer_options(&self) -> Result<ConsumerOptions, String> {
        let Command::Consumer {
            name, last, follow, ..
        } = &self.command
        else {
            return Err("not a consumer".into());
        };
        let mut options = ConsumerOptions::on(self.bus_options()?);
        options.output_method = self.output_method.into();
        options.max_chunk_size = self.max_chunk_size;
        options.name = name.clone();
        options.last = *last;
        options.follow = *follow;
        options.validate().map_err(|error| error.to_string())?;
        Ok(options)
    }
}

/// The default `--sleep-interval` in seconds, as the help shows it.
static DEFAULT_SLEEP_INTERVAL_TEXT: LazyLock<String> =
    LazyLock::new(|| DEFAULT_SLEEP_INTERVAL.as_secs_f64().to_string());

/// Declares a command-line twin of a library enum (the library has no clap),
/// with the same variants, documented for `--help`, and its conversion.
macro_rules! value_enum {
    ($(#[$meta:meta])* $arg:ident => $target:ty { $($(#[$variant_meta:meta])* $variant:ident,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
        pub enum $arg {
            $($(#[$variant_meta])* $variant,)+
        }

        impl From<$arg> for $target {
            fn from(arg: $arg) -> Self {
                match arg {
                    $($arg::$variant => <$target>::$variant,)+
                }
            }
        }
    };
}

/// `--impl`: the reference implementation whose behaviour to follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReferenceImpl {
    /// The Python reference: nothing changes
    Python,
    /// The bash reference: producers end chunks only at newlines
    Bash,
}

value_enum! {
    /// `--format`: how chunks are stored at FILE.
    FormatArg => Format {
        /// The content's bytes, nothing else (reference 0.1 and later)
        Raw,
        /// A tar archive with one member, `from_server` (reference 0.0.x), with PAX stamps
        Tar,
    }
}

value_enum! {
    /// `--input-method`: how producers fill chunk files.
    InputMethodArg => InputMethod {
        /// The fastest measured method: splice for a pipe, write otherwise
        Auto,
        /// read(2) into an mmap of the reserved file (write where space cannot be reserved)
        Mmap,
        /// read(2) into a buffer, then write(2)
        Write,
        /// splice(2) from a pipe (write if input is not a pipe)
        Splice,
    }
}

value_enum! {
    /// `--output-method`: how consumers write chunks to standard output.
    OutputMethodArg => OutputMethod {
        /// splice to a pipe, copy-file-range to a regular file, sendfile otherwise
        Auto,
        /// splice(2) from the chunk to a pipe
        Splice,
        /// sendfile(2)
        Sendfile,
        /// copy_file_range(2) to a regular file
        CopyFileRange,
        /// pread(2) into a buffer, then write(2)
        Write,
    }
}

value_enum! {
    /// `bench --sections`: the parts of the benchmark.
    SectionArg => Section {
        /// Lossless throughput for a sweep of block sizes
        Throughput,
        /// Latency from the producer's input to the consumer's output
        Latency,
        /// Loss versus data rate: plain lossy, with history, named consumers, tee
        Loss,
        /// CPU and memory versus the number of consumers at one rate
        FanOut,
        /// CPU time, wake-ups and memory of idle processes
        Idle,
    }
}

/// A `--block-size`: a whole number of bytes within the library's bounds.
fn parse_block_size(text: &str) -> Result<NonZeroUsize, String> {
    match text.trim().parse::<u64>() {
        Ok(bytes) => filebus_core::check_block_size(bytes),
        // Digits, but more than a u64 holds.
        Err(_)
            if text.trim().bytes().all(|byte| byte.is_ascii_digit()) && !text.trim().is_empty() =>
        {
            filebus_core::check_block_size(u64::MAX)
        }
        Err(_) => Err("the block size must be a positive whole number of bytes".into()),
    }
}

fn parse_consumer_name(text: &str) -> Result<String, String> {
    filebus_core::validate_consumer_name(text).map(|()| text.to_owned())
}

fn parse_delimiter(text: &str) -> Result<u8, String> {
    let byte = match text {
        "\\n" => Some(b'\n'),
        "\\t" => Some(b'\t'),
        "\\r" => Some(b'\r'),
        "\\0" => Some(0),
        "\\\\" => Some(b'\\'),
        _ if text.len() == 1 => Some(text.as_bytes()[0]),
        _ => text
            .strip_prefix("0x")
            .or_else(|| text.strip_prefix("0X"))
            .and_then(|hex| u8::from_str_radix(hex, 16).ok()),
    };
    byte.ok_or_else(|| "the delimiter must be one byte: a character, an escape such as \\n, or a hex value such as 0x1e".into())
}

fn parse_sleep_interval(text: &str) -> Result<Duration, String> {
    let seconds: f64 = text
        .trim()
        .parse()
        .map_err(|_| "the sleep interval must be a number of seconds, such as 0.1".to_string())?;
    if !seconds.is_finite() {
        return Err("the sleep interval must be finite".into());
    }
    if seconds < 0.0 {
        return Err("the sleep interval cannot be negative".into());
    }
    Duration::try_from_secs_f64(seconds).map_err(|_| "the sleep interval is too large".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_size_accepts_positive_integers_only() {
        assert_eq!(parse_block_size("4096").map(NonZeroUsize::get), Ok(4096));
        assert_eq!(
            parse_block_size("1073741824").map(NonZeroUsize::get),
            Ok(1 << 30)
        );
        for bad in [
            "0",
            "-1",
            "1.5",
            "abc",
            "",
            "1073741825",
            "99999999999999",
            "99999999999999999999999",
        ] {
            assert!(parse_block_size(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn sleep_interval_accepts_non_negative_finite_seconds() {
        assert_eq!(parse_sleep_interval("0.25"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_sleep_interval("0"), Ok(Duration::ZERO));
        for bad in ["-0.1", "NaN", "inf", "-inf", "x", "1e300"] {
            assert!(parse_sleep_interval(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn delimiter_accepts_one_byte_in_several_spellings() {
        for (text, byte) in [
            (",", b','),
            ("\\n", b'\n'),
            ("\\0", 0),
            ("0x1e", 0x1e),
            ("\\\\", b'\\'),
        ] {
            assert_eq!(parse_delimiter(text), Ok(byte), "{text:?}");
        }
        for bad in ["", "ab", "0x100", "\\q", "é"] {
            assert!(parse_delimiter(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn bench_hides_every_global_option_behind_a_twin() {
        use clap::CommandFactory;
        let mut command = Cli::command();
        command.build();
        let bench = command
            .find_subcommand("bench")
            .expect("a bench subcommand");
        for global in command.get_arguments().filter(|arg| arg.is_global_set()) {
            let twin = bench
                .get_arguments()
                .find(|arg| arg.get_id() == global.get_id())
                .unwrap_or_else(|| panic!("no twin of {} in bench", global.get_id()));
            assert!(twin.is_hide_set(), "{} shown in bench", global.get_id());
            assert_eq!(twin.get_long(), global.get_long(), "{}", global.get_id());
            assert_eq!(twin.get_short(), global.get_short(), "{}", global.get_id());
            assert_eq!(
                twin.get_action().takes_values(),
                global.get_action().takes_values(),
                "{}",
                global.get_id()
            );
        }
    }

    #[test]
    fn command_line_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
