#!/usr/bin/env python3
"""Probes for issue 9 ("fast by default") that `filebus bench` does not make:

  latency  one 32-byte record every SPACING seconds through one lossy
           consumer, timed from the write into the producer's stdin to the
           read from the consumer's stdout (monotonic clock, this process);
           OPTIONS are passed to both sides as given (none: default options).
           PROGRAM "cat" measures `cat | cat` the same way.
  loss     64-byte numbered records at RATE records/s for one second into a
           lossy producer with CONSUMERS consumers (each with --stats):
           the fraction of records delivered whole to each consumer, and the
           chunks published per second (emitted + missed, from --stats).

Usage:
  results/scripts/fast-by-default-probe.py latency PROGRAM SPACING RECORDS [OPTIONS...]
  results/scripts/fast-by-default-probe.py loss PROGRAM RATE CONSUMERS [OPTIONS...]

Prints one line of results. The machine is shared: run each point several
times and compare medians, side by side with the baseline of the same run.
"""

import os
import select
import signal
import subprocess
import sys
import tempfile
import time


WARM_UP_RECORDS = 5


def percentile(sorted_values, fraction):
    index = min(len(sorted_values) - 1, int(round(fraction * (len(sorted_values) - 1))))
    return sorted_values[index]


def start_bus(program, bus, options, consumers, stats=False):
    """Starts the consumers, then the producer; returns (producer, consumers)."""
    procs = []
    for _ in range(consumers):
        args = [program, "--filename", bus, *options, "consumer"]
        if stats:
            args.append("--stats")
        procs.append(subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    time.sleep(0.5)
    producer = subprocess.Popen(
        [program, "--filename", bus, *options, "producer"], stdin=subprocess.PIPE
    )
    return producer, procs


def latency(program, spacing, records, options):
    with tempfile.TemporaryDirectory(prefix="fb9-latency-", dir="/tmp") as scratch:
        if program == "cat":
            consumer = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            producer = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=consumer.stdin)
            consumer.stdin.close()
            consumers = [consumer]
        else:
            producer, consumers = start_bus(program, os.path.join(scratch, "bus"), options, 1)
        out = consumers[0].stdout.fileno()
        inp = producer.stdin.fileno()
        buffered = b""
        sent_at = {}
        samples = []

        def read_some(timeout):
            nonlocal buffered
            ready, _, _ = select.select([out], [], [], max(0.0, timeout))
            if not ready:
                return
            now = time.perf_counter_ns()
            chunk = os.read(out, 1 << 16)
            if not chunk:
                sys.exit("the consumer's output ended")
            buffered += chunk
            while len(buffered) >= 32:
                record, buffered = buffered[:32], buffered[32:]
                number = int(record)
                if number in sent_at and number >= WARM_UP_RECORDS:
                    samples.append((now - sent_at.pop(number)) / 1000.0)
                else:
                    sent_at.pop(number, None)

        # Warm-up records (not measured) until the first comes out, so that
        # everyone is up; then records on a fixed schedule, one every
        # SPACING seconds whatever the output does.
        os.write(inp, b"%031d\n" % 0)
        sent_at[0] = time.perf_counter_ns()
        deadline = time.monotonic() + 30
        while 0 in sent_at:
            if time.monotonic() > deadline:
                sys.exit("the first record did not arrive within 30 s")
            read_some(0.1)
        for number in range(1, WARM_UP_RECORDS):
            os.write(inp, b"%031d\n" % number)
            pause = time.perf_counter() + spacing
            while time.perf_counter() < pause:
                read_some(pause - time.perf_counter())
        start = time.perf_counter()
        write_times = []
        last = WARM_UP_RECORDS + records
        for index, number in enumerate(range(WARM_UP_RECORDS, last)):
            due = start + index * spacing
            while time.perf_counter() < due:
                read_some(due - time.perf_counter())
            os.write(inp, b"%031d\n" % number)
            sent_at[number] = time.perf_counter_ns()
            write_times.append(sent_at[number])
        deadline = time.monotonic() + 30
        while len(samples) < records and time.monotonic() < deadline:
            read_some(0.1)
        producer.stdin.close()
        for proc in [producer, *consumers]:
            try:
                proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    samples.sort()
    gaps = [(b - a) / 1e6 for a, b in zip(write_times, write_times[1:])]
    print(
        f"latency {program} spacing={spacing}s options={' '.join(options) or '(default)'}: "
        f"n={len(samples)}/{records} p50={percentile(samples, 0.5):.0f}us "
        f"p99={percentile(samples, 0.99):.0f}us max={samples[-1]:.0f}us "
        f"(writes {min(gaps):.1f} to {max(gaps):.1f} ms apart)"
    )


RECORD = 64


def encode(number):
    return b"%063d\n" % number


def loss(program, rate, consumers, options):
    duration = 1.0
    total = int(rate * duration)
    with tempfile.TemporaryDirectory(prefix="fb9-loss-", dir="/tmp") as scratch:
        producer, procs = start_bus(program, os.path.join(scratch, "bus"), options, consumers, True)
        outputs = [bytearray() for _ in procs]
        fds = [proc.stdout.fileno() for proc in procs]
        for fd in fds:
            os.set_blocking(fd, False)
        inp = producer.stdin.fileno()

        def drain(timeout):
            ready, _, _ = select.select(fds, [], [], timeout)
            for fd in ready:
                try:
                    outputs[fds.index(fd)] += os.read(fd, 1 << 20)
                except BlockingIOError:
                    pass

        # Warm-up: a record every 0.1 s until every consumer has one.
        warm = 0
        while not all(outputs):
            os.write(inp, b"w" * (RECORD - 1) + b"\n")
            warm += 1
            drain(0.1)
            if warm > 300:
                sys.exit("the consumers did not show up")
        time.sleep(0.3)
        drain(0)
        for output in outputs:
            output.clear()
        start = time.perf_counter()
        sent = 0
        while sent < total:
            due = min(total, int((time.perf_counter() - start) * rate) + 1)
            if due > sent:
                os.write(inp, b"".join(encode(n) for n in range(sent, due)))
                sent = due
            drain(0)
            wait = start + sent / rate - time.perf_counter()
            if wait > 0:
                drain(wait)
        write_seconds = time.perf_counter() - start
        end = time.monotonic() + 2
        while time.monotonic() < end:
            drain(0.05)
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        stats = []
        for index, proc in enumerate(procs):
            rest, err = proc.communicate(timeout=10)
            outputs[index] += rest
            line = [l for l in err.decode(errors="replace").splitlines() if "stats:" in l]
            stats.append(line[-1] if line else "")
        producer.stdin.close()
        producer.wait(timeout=10)
    fractions = []
    for output in outputs:
        seen = set()
        for piece in bytes(output).split(b"\n"):
            if len(piece) == RECORD - 1 and piece.isdigit():
                number = int(piece)
                if number < total and encode(number)[:-1] == piece:
                    seen.add(number)
        fractions.append(len(seen) / total)
    chunks = []
    for line in stats:
        numbers = [int(word) for word in line.replace(";", " ").replace(",", " ").split() if word.isdigit()]
        if len(numbers) >= 3:
            chunks.append(numbers[0] + numbers[2])
    chunk_rate = (max(chunks) / write_seconds) if chunks else float("nan")
    print(
        f"loss {program} rate={rate}/s x{consumers} options={' '.join(options) or '(default)'}: "
        f"achieved={(total - 1) / write_seconds:.0f}/s "
        f"delivered={100 * sum(fractions) / len(fractions):.2f}% "
        f"worst={100 * min(fractions):.2f}% chunks/s={chunk_rate:.0f}"
    )


def main():
    if len(sys.argv) < 5 or sys.argv[1] not in ("latency", "loss"):
        sys.exit(__doc__)
    kind, program = sys.argv[1], sys.argv[2]
    options = sys.argv[5:]
    if kind == "latency":
        latency(program, float(sys.argv[3]), int(sys.argv[4]), options)
    else:
        loss(program, int(sys.argv[3]), int(sys.argv[4]), options)


if __name__ == "__main__":
    main()
