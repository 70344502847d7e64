#!/usr/bin/env python3
"""Soak test of a filebus history bus (issue 15).

Producers and consumers (named and unnamed, with and without --follow) are
started, SIGSTOPped, SIGCONTinued, SIGTERMed and SIGKILLed at random on one
history bus, some through a bindfs mount of the bus directory and some
through the directory underneath (two "machines"). Then a checker proves,
from a complete archive of every published chunk:

* every chunk is whole records of one producer run, in order, within its
  producer's block size, and every record a producer wrote is published
  (all of them for a producer that ended by itself);
* every consumer output is whole chunks, in increasing sequence order (a
  partial chunk only at the end of a consumer killed with SIGKILL);
* a named consumer writes every chunk from where it started, with no gap
  after its registration; across its own restarts it skips nothing and
  repeats at most the one chunk it was writing when SIGKILLed;
* an unnamed consumer's skipped chunks are exactly those named in its
  "filebus: lost ..." lines;
* a consumer without --follow exits 0 at the first end-of-stream chunk of
  its stream, one with --follow never exits by itself;
* the history never holds more than depth + 1 entries (sampled every few
  milliseconds), and holds the last depth entries at the end.

The complete archive comes from an "archivist": this script, registered as
a named consumer through the documented protocol (docs/PROTOCOL.md: an
exclusive flock on F.consumers/NAME and the extended attribute
user.filebus.cursor), so producers never drop an entry it has not read.
It reads entry s only once the bus counter (user.filebus.seq on F.lock)
is at least s, and checks the entry's own stamp.

Usage:
  soak.py run --duration SECONDS --work DIR --binary PATH [--seed N] [--history N]
  soak.py check --work DIR            (re-run the checker on a finished run)
  soak.py archivist BUS WORKDIR DEPTH (internal)
"""

import argparse
import bisect
import errno
import fcntl
import json
import mmap
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

RECORD = 16  # b"P%05d:%08d\n"
RECORD_RE = re.compile(rb"P(\d{5}):(\d{8})\n")
START_RE = re.compile(rb"history consumer: starting at chunk (Some\((\d+)\)|None)( \(after the cursor\))?")
LOST_RE = re.compile(
    rb"^filebus: lost (\d+) chunks?: chunks? (\d+)(?: to (\d+))? left the history "
    rb"before this consumer wrote (?:it|them)$"
)
NAMES = ["n0", "n1", "n2", "n3"]
ARCHIVIST = "soak-archivist"


def record(run, index):
    return b"P%05d:%08d\n" % (run, index)


# --------------------------------------------------------------------------
# The archivist: a named consumer written against docs/PROTOCOL.md.


def archivist(bus, work, depth):
    hist = bus + ".history"
    lock = bus + ".lock"
    cdir = bus + ".consumers"
    os.makedirs(cdir, exist_ok=True)
    cfd = os.open(os.path.join(cdir, ARCHIVIST), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    fcntl.flock(cfd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.setxattr(cfd, "user.filebus.cursor", b"0")
    hfd = os.open(hist, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    archive = open(os.path.join(work, "archive.bin"), "ab")
    index = open(os.path.join(work, "archive.tsv"), "a")
    depthlog = open(os.path.join(work, "depth.log"), "a")
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    nxt = 1
    offset = 0
    max_entries = 0
    samples = 0
    over = 0
    last_sample = 0.0
    idle = 0.001
    with open(os.path.join(work, "archivist.ready"), "w") as f:
        f.write("ready\n")

    def counter():
        try:
            return int(os.getxattr(lock, "user.filebus.seq"))
        except OSError as e:
            if e.errno in (errno.ENODATA, errno.ENOENT):
                return 0
            raise

    while True:
        final = bool(stopping)
        top = counter()
        progressed = False
        while nxt <= top:
            try:
                fd = os.open("%020d" % nxt, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=hfd)
            except FileNotFoundError:
                # Linked before the counter is recorded, and held for us:
                # a number that was never published.
                index.write("%d\tHOLE\n" % nxt)
                nxt += 1
                progressed = True
                continue
            try:
                st = os.fstat(fd)
                parts = []
                while True:
                    b = os.read(fd, 1 << 20)
                    if not b:
                        break
                    parts.append(b)
                data = b"".join(parts)
                try:
                    seq = int(os.getxattr(fd, "user.filebus.seq"))
                    tns = int(os.getxattr(fd, "user.filebus.time"))
                except OSError:
                    seq, tns = -1, -1
            finally:
                os.close(fd)
            archive.write(data)
            index.write("%d\t%d\t%d\t%d\t%d\t%d\t%d\n" % (nxt, offset, len(data), tns, seq, st.st_ino, st.st_size))
            offset += len(data)
            os.setxattr(cfd, "user.filebus.cursor", str(nxt).encode())
            nxt += 1
            progressed = True
        if progressed:
            archive.flush()
            index.flush()
            idle = 0.001
        now = time.monotonic()
        if now - last_sample > 0.005:
            last_sample = now
            names = [n for n in os.listdir(hist) if len(n) == 20 and n.isdigit()]
            samples += 1
            if len(names) > max_entries:
                max_entries = len(names)
            if len(names) > depth + 1:
                over += 1
                depthlog.write("%.6f over %d %s\n" % (time.time(), len(names), " ".join(sorted(names))))
                depthlog.flush()
        if final:
            break
        if not progressed:
            time.sleep(idle)
            idle = min(idle * 2, 0.004)
    archive.close()
    index.close()
    with open(os.path.join(work, "archivist.done"), "w") as f:
        json.dump({"next": nxt, "counter": top, "max_entries": max_entries, "samples": samples, "over": over}, f)


# --------------------------------------------------------------------------
# The orchestrator.


class Proc:
    def __init__(self, pid_id, kind, **kw):
        self.id = pid_id
        self.kind = kind  # producer | named | unnamed
        self.__dict__.update(kw)
        self.stopped = False
        self.cont_at = None
        self.signals = []
        self.rc = None
        self.end = None
        self.reg_time = None
        self.written = 0
        self.done_writing = False
        self.drained = False


class Soak:
    def __init__(self, args):
        self.args = args
        self.rng = random.Random(args.seed)
        self.work = os.path.abspath(args.work)
        self.base = os.path.join(self.work, "fs")
        self.under = os.path.join(self.base, "under")
        self.mnt = os.path.join(self.base, "mnt")
        self.out = os.path.join(self.work, "runs")
        self.bin = os.path.abspath(args.binary)
        self.depth = args.history
        self.procs = {}
        self.next_id = 0
        self.next_run = 1
        self.events = open(os.path.join(self.work, "events.jsonl"), "w")
        self.hurry = False
        self.counts = {"start_producer": 0, "start_named": 0, "start_unnamed": 0, "SIGSTOP": 0,
                       "SIGKILL": 0, "SIGTERM": 0, "SIGCONT": 0, "name_refused": 0}
        self.name_free_at = {n: 0.0 for n in NAMES}

    def log(self, **kw):
        kw["t"] = time.time()
        self.events.write(json.dumps(kw) + "\n")

    def path(self, where):
        return os.path.join(self.under if where == "disk" else self.mnt, "bus")

    def setup(self):
        os.makedirs(self.under)
        os.makedirs(self.mnt)
        os.makedirs(self.out)
        subprocess.run(["bindfs", "--multithreaded", "--enable-lock-forwarding", self.under, self.mnt], check=True)
        # The bus, with its history: an empty stream (chunk 1, end of stream).
        subprocess.run([self.bin, "--filename", self.path("disk"), "producer", "--history", str(self.depth)],
                       stdin=subprocess.DEVNULL, check=True)
        self.arch = subprocess.Popen([sys.executable, os.path.abspath(__file__), "archivist", self.path("disk"),
                                      self.work, str(self.depth)])
        while not os.path.exists(os.path.join(self.work, "archivist.ready")):
            if self.arch.poll() is not None:
                raise SystemExit("archivist failed")
            time.sleep(0.01)
        self.log(ev="setup", under=self.under, mnt=self.mnt, depth=self.depth, binary=self.bin)

    def new_id(self):
        self.next_id += 1
        return self.next_id

    def start_producer(self, where=None, count=None, closing=False):
        rng = self.rng
        where = where or rng.choice(["disk", "mnt"])
        run = self.next_run
        self.next_run += 1
        if count is None:
            count = int(10 ** rng.uniform(0, 4.3))  # 1 to 20,000 records
        block = rng.choice([16, 16, 32, 48, 160, 1024, 4096, 65536])
        burst = rng.choice([1, 1, 3, 10, 50, 300])
        pause = rng.choice([0.0, 0.001, 0.01, 0.03, 0.1])
        hist = closing or rng.random() < 0.8
        argv = [self.bin, "--filename", self.path(where), "producer", "--lines", "--block-size", str(block)]
        if hist:
            argv += ["--history", str(self.depth)]
        if rng.random() < 0.3:
            argv += ["--sleep-interval", rng.choice(["0", "0.02", "0.3"])]
        pid = self.new_id()
        err = open(os.path.join(self.out, "%05d.err" % pid), "wb")
        p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err)
        err.close()
        pr = Proc(pid, "producer", run=run, where=where, count=count, block=block, burst=burst, pause=pause,
                  argv=argv, popen=p, pid=p.pid, start=time.time())
        self.procs[pid] = pr
        self.counts["start_producer"] += 1
        self.log(ev="start", id=pid, kind="producer", run=run, where=where, count=count, block=block,
                 burst=burst, pause=pause, argv=argv, pid=p.pid)
        t = threading.Thread(target=self.feed, args=(pr, random.Random(rng.random())), daemon=True)
        t.start()
        pr.thread = t
        return pr

    def feed(self, pr, rng):
        fd = pr.popen.stdin.fileno()
        i = 0
        try:
            while i < pr.count:
                n = min(pr.count - i, rng.randint(1, pr.burst))
                os.write(fd, b"".join(record(pr.run, j) for j in range(i, i + n)))
                i += n
                pr.written = i
                if pr.pause and not self.hurry:
                    time.sleep(rng.uniform(0, pr.pause))
        except (BrokenPipeError, OSError):
            pass
        pr.written = i
        pr.done_writing = True
        try:
            pr.popen.stdin.close()
        except OSError:
            pass

    def start_consumer(self, named, where=None, follow=None):
        rng = self.rng
        where = where or rng.choice(["disk", "mnt"])
        follow = rng.random() < 0.5 if follow is None else follow
        name = None
        if named:
            now = time.monotonic()
            busy = {p.name for p in self.live() if p.kind == "named"}
            free = [n for n in NAMES if n not in busy and self.name_free_at[n] <= now]
            if not free:
                return None
            name = rng.choice(free)
        argv = [self.bin, "--filename", self.path(where), "consumer", "-vv"]
        if name:
            argv += ["--name", name]
        if follow:
            argv += ["--follow"]
        pid = self.new_id()
        out = open(os.path.join(self.out, "%05d.out" % pid), "wb")
        err = open(os.path.join(self.out, "%05d.err" % pid), "wb")
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        out.close()
        err.close()
        kind = "named" if named else "unnamed"
        pr = Proc(pid, kind, name=name, where=where, follow=follow, argv=argv, popen=p, pid=p.pid, start=time.time())
        self.procs[pid] = pr
        self.counts["start_" + kind] += 1
        self.log(ev="start", id=pid, kind=kind, name=name, where=where, follow=follow, argv=argv, pid=p.pid)
        return pr

    def live(self):
        return [p for p in self.procs.values() if p.rc is None]

    def send(self, pr, sig):
        try:
            pr.popen.send_signal(sig)
        except ProcessLookupError:
            return
        name = signal.Signals(sig).name
        pr.signals.append(name)
        if name in self.counts:
            self.counts[name] += 1
        self.log(ev="signal", id=pr.id, sig=name)

    def reap(self):
        now = time.time()
        for pr in self.live():
            if pr.kind != "producer" and pr.reg_time is None:
                with open(os.path.join(self.out, "%05d.err" % pr.id), "rb") as f:
                    if START_RE.search(f.read()):
                        if pr.kind != "named" or os.path.exists(os.path.join(self.under, "bus.consumers", pr.name)):
                            pr.reg_time = now
                            self.log(ev="registered", id=pr.id)
            rc = pr.popen.poll()
            if rc is not None:
                pr.rc = rc
                pr.end = now
                if pr.kind == "named":
                    # FUSE releases a forwarded lock asynchronously: leave the name a moment.
                    self.name_free_at[pr.name] = time.monotonic() + 1.0
                    if rc == 1:
                        with open(os.path.join(self.out, "%05d.err" % pr.id), "rb") as f:
                            if b"is already running on this bus" in f.read():
                                self.counts["name_refused"] += 1
                self.log(ev="exit", id=pr.id, rc=rc)
            elif pr.stopped and pr.cont_at is not None and time.monotonic() >= pr.cont_at:
                self.send(pr, signal.SIGCONT)
                pr.stopped = False
                pr.cont_at = None

    def act(self):
        rng = self.rng
        live = self.live()
        prods = [p for p in live if p.kind == "producer"]
        named = [p for p in live if p.kind == "named"]
        unnamed = [p for p in live if p.kind == "unnamed"]
        choices = []
        if len(prods) < 3:
            choices.append(("producer", 3.0 if len(prods) == 0 else 1.5))
        if len(named) < len(NAMES):
            choices.append(("named", 1.5))
        if len(unnamed) < 4:
            choices.append(("unnamed", 1.5))
        if live:
            choices += [("stop", 1.2), ("kill", 1.0), ("term", 0.7)]
        total = sum(w for _, w in choices)
        x = rng.uniform(0, total)
        for what, w in choices:
            x -= w
            if x <= 0:
                break
        if what == "producer":
            self.start_producer()
        elif what == "named":
            self.start_consumer(True)
        elif what == "unnamed":
            self.start_consumer(False)
        else:
            # Consumers more often than producers: they are the subject.
            target = rng.choice(live)
            if what == "stop":
                if not target.stopped:
                    self.send(target, signal.SIGSTOP)
                    target.stopped = True
                    target.cont_at = time.monotonic() + rng.uniform(0.2, 4.0)
            elif what == "kill":
                self.send(target, signal.SIGKILL)
            else:
                self.send(target, signal.SIGTERM)

    def run(self):
        self.setup()
        t_end = time.monotonic() + self.args.duration
        next_act = time.monotonic()
        while time.monotonic() < t_end:
            self.reap()
            if time.monotonic() >= next_act:
                self.act()
                next_act = time.monotonic() + self.rng.uniform(0.05, 0.6)
            time.sleep(0.02)
        self.log(ev="drain")
        self.drain()
        self.teardown()

    def wait_until(self, cond, timeout):
        t = time.monotonic() + timeout
        while time.monotonic() < t:
            self.reap()
            if cond():
                return True
            time.sleep(0.05)
        return False

    def counter(self):
        try:
            return int(os.getxattr(os.path.join(self.under, "bus.lock"), "user.filebus.seq"))
        except OSError:
            return 0

    def drain(self):
        self.hurry = True
        for pr in self.live():
            if pr.stopped:
                self.send(pr, signal.SIGCONT)
                pr.stopped = False
                pr.cont_at = None
        # Producers end their input at full speed.
        ok = self.wait_until(lambda: not [p for p in self.live() if p.kind == "producer"], 300)
        self.log(ev="producers_ended", ok=ok)
        for pr in self.live():
            if pr.kind == "producer":
                self.send(pr, signal.SIGKILL)
        self.wait_until(lambda: not [p for p in self.live() if p.kind == "producer"], 10)
        # A closing stream, seen by every consumer left.
        closing = self.start_producer(where="disk", count=200, closing=True)
        self.closing_run = closing.run
        self.wait_until(lambda: closing.rc is not None, 120)
        final = self.counter()
        self.log(ev="closing_done", final=final, rc=closing.rc)
        # Consumers without --follow end by themselves.
        ended = self.wait_until(lambda: not [p for p in self.live() if p.kind != "producer" and not p.follow], 120)
        self.log(ev="plain_consumers_ended", ok=ended)
        for pr in self.live():
            if pr.kind != "producer" and not pr.follow:
                pr.drain_timeout = True
                self.log(ev="did_not_end", id=pr.id)
                self.send(pr, signal.SIGKILL)
        # Followers reach the end, then are told to stop.
        last = record(self.closing_run, 199)

        def reached(pr):
            if pr.kind == "named":
                try:
                    c = int(os.getxattr(os.path.join(self.under, "bus.consumers", pr.name), "user.filebus.cursor"))
                except OSError:
                    return False
                return c >= final
            with open(os.path.join(self.out, "%05d.out" % pr.id), "rb") as f:
                f.seek(0, 2)
                if f.tell() >= RECORD:
                    f.seek(-RECORD, 2)
                    if f.read() == last:
                        return True
            return False

        followers = [p for p in self.live() if p.kind != "producer"]
        self.wait_until(lambda: all(reached(p) for p in followers if p.rc is None), 120)
        for pr in followers:
            pr.drained = pr.rc is None and reached(pr)
            if pr.rc is None:
                self.send(pr, signal.SIGTERM)
        self.wait_until(lambda: not self.live(), 30)
        for pr in self.live():
            self.send(pr, signal.SIGKILL)
        self.wait_until(lambda: not self.live(), 10)
        self.arch.send_signal(signal.SIGTERM)
        self.arch.wait(60)
        self.final_counter = final

    def teardown(self):
        hist = os.path.join(self.under, "bus.history")
        entries = sorted(n for n in os.listdir(hist) if len(n) == 20 and n.isdigit())
        left = sorted(os.listdir(self.under))
        state = {
            "final_counter": self.counter(),
            "history_entries": entries,
            "bus_dir": left,
            "closing_run": self.closing_run,
            "counts": self.counts,
            "procs": [
                {k: v for k, v in p.__dict__.items() if k not in ("popen", "thread")}
                for p in self.procs.values()
            ],
        }
        with open(os.path.join(self.work, "state.json"), "w") as f:
            json.dump(state, f, indent=1)
        self.events.close()
        subprocess.run(["fusermount", "-u", self.mnt])


# --------------------------------------------------------------------------
# The checker.


class Checker:
    def __init__(self, work, depth):
        self.work = work
        self.depth = depth
        self.v = []  # violations
        self.notes = []
        with open(os.path.join(work, "state.json")) as f:
            self.state = json.load(f)
        self.procs = {p["id"]: p for p in self.state["procs"]}
        self.chunks = {}  # seq -> (off, len, tns, run, first, n)
        self.holes = set()
        af = open(os.path.join(work, "archive.bin"), "rb")
        self.archive = mmap.mmap(af.fileno(), 0, access=mmap.ACCESS_READ) if os.path.getsize(af.name) else b""
        with open(os.path.join(work, "archive.tsv")) as f:
            for line in f:
                parts = line.split()
                seq = int(parts[0])
                if parts[1] == "HOLE":
                    self.holes.add(seq)
                    continue
                off, ln, tns, stamp = int(parts[1]), int(parts[2]), int(parts[3]), int(parts[4])
                if stamp != seq:
                    self.violation("stamp", seq=seq, detail="entry %d carries stamp %d" % (seq, stamp))
                self.chunks[seq] = [off, ln, tns, None, None, 0]
        self.max_seq = max(list(self.chunks) + list(self.holes) + [0])
        self.eos = sorted(s for s, c in self.chunks.items() if c[1] == 0)
        self.ne_sorted = sorted(s for s, c in self.chunks.items() if c[1] > 0)
        self.runs = {}  # run -> sorted list of (first index, seq)
        self.bytes_checked = 0
        self.records_checked = 0

    def violation(self, kind, **kw):
        kw["kind"] = kind
        self.v.append(kw)

    def data(self, seq):
        c = self.chunks[seq]
        return self.archive[c[0]:c[0] + c[1]]

    def check_chunks(self):
        producers = {p["run"]: p for p in self.procs.values() if p["kind"] == "producer"}
        for seq in sorted(self.chunks):
            c = self.chunks[seq]
            if c[1] == 0:
                continue
            d = self.data(seq)
            m = RECORD_RE.match(d)
            if not m or len(d) % RECORD:
                self.violation("torn_chunk", seq=seq, detail="chunk %d is not whole records: %r" % (seq, d[:40]))
                continue
            run, first = int(m.group(1)), int(m.group(2))
            n = len(d) // RECORD
            if d != b"".join(record(run, i) for i in range(first, first + n)):
                self.violation("torn_chunk", seq=seq, detail="chunk %d is not consecutive records of run %d" % (seq, run))
                continue
            c[3], c[4], c[5] = run, first, n
            self.runs.setdefault(run, []).append((first, seq))
            p = producers.get(run)
            if p is None:
                self.violation("foreign_chunk", seq=seq, detail="run %d unknown" % run)
            elif len(d) > p["block"]:
                self.violation("chunk_too_big", seq=seq, detail="%d bytes > block size %d" % (len(d), p["block"]))
        for run, p in producers.items():
            lst = self.runs.get(run, [])
            expect = 0
            for first, seq in lst:
                if first != expect:
                    self.violation("producer_order", run=run, seq=seq,
                                   detail="run %d: chunk %d starts at record %d, expected %d" % (run, seq, first, expect))
                expect = first + self.chunks[seq][5]
            published = expect
            p["published"] = published
            if published > p["written"]:
                self.violation("producer_extra", run=run, detail="published %d > written %d" % (published, p["written"]))
            if p["rc"] == 0 and published != p["count"]:
                self.violation("producer_lost_input", run=run,
                               detail="exited 0 having published %d of %d records" % (published, p["count"]))
            if p["rc"] not in (0, -9, -15):
                self.violation("producer_exit", run=run, id=p["id"], detail="rc %s" % p["rc"])
            if p["rc"] == -15 and "SIGTERM" not in p["signals"]:
                self.violation("producer_exit", run=run, id=p["id"], detail="rc -15 without SIGTERM")
        self.run_firsts = {r: [f for f, _ in lst] for r, lst in self.runs.items()}
        clean = sum(1 for p in producers.values() if p["rc"] == 0)
        # +1: the empty stream that made the bus.
        if len(self.eos) < clean + 1:
            self.violation("eos_count", detail="%d end-of-stream chunks for %d producers that ended by themselves"
                           % (len(self.eos), clean))

    def seq_of(self, run, idx):
        firsts = self.run_firsts.get(run)
        if not firsts:
            return None
        k = bisect.bisect_right(firsts, idx) - 1
        if k < 0:
            return None
        seq = self.runs[run][k][1]
        c = self.chunks[seq]
        if idx >= c[4] + c[5]:
            return None
        return seq

    def parse_output(self, p):
        """Whole chunks written, in order; a partial last chunk."""
        path = os.path.join(self.work, "runs", "%05d.out" % p["id"])
        with open(path, "rb") as f:
            out = f.read()
        self.bytes_checked += len(out)
        written = []
        partial = None
        pos = 0
        while pos < len(out):
            rec = out[pos:pos + RECORD]
            m = RECORD_RE.fullmatch(rec)
            if not m:
                if len(rec) < RECORD and out[pos:] == rec and re.fullmatch(rb"P[\d:]*", rec) and p["rc"] == -9:
                    partial = ("bytes", pos)
                    break
                self.violation("torn_output", id=p["id"], detail="offset %d: %r" % (pos, out[pos:pos + 40]))
                return written, partial, False
            run, idx = int(m.group(1)), int(m.group(2))
            seq = self.seq_of(run, idx)
            if seq is None:
                self.violation("unknown_record", id=p["id"], detail="offset %d: %r in no archived chunk" % (pos, rec))
                return written, partial, False
            c = self.chunks[seq]
            if idx != c[4]:
                self.violation("torn_output", id=p["id"], seq=seq,
                               detail="offset %d: output starts chunk %d at its record %d" % (pos, seq, idx - c[4]))
                return written, partial, False
            ln = c[1]
            if out[pos:pos + ln] == self.data(seq):
                written.append(seq)
                self.records_checked += c[5]
                pos += ln
            elif pos + ln > len(out) and out[pos:] == self.data(seq)[:len(out) - pos]:
                partial = seq
                break
            else:
                self.violation("torn_output", id=p["id"], seq=seq, detail="offset %d: chunk %d differs" % (pos, seq))
                return written, partial, False
        for a, b in zip(written, written[1:]):
            if b <= a:
                self.violation("order", id=p["id"], detail="chunk %d written after chunk %d" % (b, a))
                return written, partial, False
        if partial is not None and p["rc"] != -9:
            self.violation("torn_output", id=p["id"], detail="partial chunk %s at the end, rc %s" % (partial, p["rc"]))
        return written, partial, True

    def parse_err(self, p):
        path = os.path.join(self.work, "runs", "%05d.err" % p["id"])
        with open(path, "rb") as f:
            err = f.read()
        start = None
        lost = []
        other = []
        for line in err.split(b"\n"):
            if not line:
                continue
            m = START_RE.search(line)
            if m:
                if start is not None:
                    self.violation("two_starts", id=p["id"], detail=line.decode(errors="replace"))
                start = int(m.group(2)) if m.group(2) else None
                p["resumed"] = bool(m.group(3))
                continue
            m = LOST_RE.match(line)
            if m:
                n, a = int(m.group(1)), int(m.group(2))
                b = int(m.group(3)) if m.group(3) else a
                if n != b - a + 1:
                    self.violation("lost_line", id=p["id"], detail=line.decode())
                lost.append((a, b))
                continue
            if line.startswith(b"filebus: debug:") or line.startswith(b"filebus: info:"):
                continue
            other.append(line.decode(errors="replace"))
        return start, lost, other

    def nonempty(self, a, b):
        """Sequence numbers of non-empty chunks in [a, b]."""
        ne = self.ne_sorted
        return ne[bisect.bisect_left(ne, a):bisect.bisect_right(ne, b)]

    def check_consumers(self):
        self.lost_chunks = 0
        self.lost_lines = 0
        self.prereg_losses = 0
        self.ambiguous_ends = 0
        self.repeats = 0
        self.other_lines = []
        chains = {}
        for pid in sorted(self.procs):
            p = self.procs[pid]
            if p["kind"] == "producer":
                continue
            written, partial, ok = self.parse_output(p)
            start, lost, other = self.parse_err(p)
            for line in other:
                self.other_lines.append((pid, p["rc"], line))
            p["S"] = start
            p["written_chunks"] = len(written)
            rc = p["rc"]
            killed = rc in (-9, -15)
            if rc == -15 and "SIGTERM" not in p["signals"]:
                self.violation("consumer_exit", id=pid, detail="rc -15 without SIGTERM")
            if rc == 0 and p["follow"]:
                self.violation("consumer_exit", id=pid, detail="--follow consumer exited 0")
            if rc not in (0, -9, -15):
                self.violation("consumer_exit", id=pid, detail="rc %s; stderr: %s" % (rc, " | ".join(other)[:300]))
            if p.get("drain_timeout"):
                self.violation("did_not_end", id=pid, detail="a consumer without --follow still ran 120 s after the closing stream")
            if not ok:
                # Already a violation; its neighbours in a named chain are
                # not judged against it.
                if p["kind"] == "named":
                    chains.setdefault(p["name"], []).append(None)
                continue
            if start is None:
                if written or lost:
                    self.violation("no_start", id=pid, detail="wrote or lost chunks without a start line")
                continue
            lost_set = set()
            for a, b in lost:
                self.lost_lines += 1
                for s in range(a, b + 1):
                    if s in lost_set:
                        self.violation("lost_twice", id=pid, detail="chunk %d reported twice" % s)
                    lost_set.add(s)
            self.lost_chunks += len(lost_set)
            ws = set(written)
            if written and written[0] < start:
                self.violation("before_start", id=pid, detail="wrote chunk %d, started at %d" % (written[0], start))
            for s in sorted(lost_set):
                if s in ws:
                    self.violation("lost_but_written", id=pid, detail="chunk %d reported lost and written" % s)
                if s < start:
                    self.violation("lost_before_start", id=pid, detail="chunk %d reported lost, started at %d" % (s, start))
                if s > self.max_seq:
                    self.violation("lost_unpublished", id=pid, detail="chunk %d reported lost, never published" % s)
            processed = ws | lost_set
            top = max(processed) if processed else start - 1
            end_eos = None
            if rc == 0 and not p["follow"]:
                # The first end-of-stream chunk after what it wrote that was
                # not already published when it started (one at F then ends
                # nothing for a plain consumer).
                # A named consumer resuming after its cursor ends at the
                # first one after the cursor, whenever it was published.
                cands = [e for e in self.eos if e >= start and e > top
                         and (p.get("resumed") or self.chunks[e][2] / 1e9 >= p["start"] - 0.05)]
                if not cands:
                    self.violation("end_without_eos", id=pid, detail="exited 0 with no end-of-stream chunk after %d" % top)
                else:
                    end_eos = cands[0]
                    # A stamp's time is taken before the producer waits for
                    # named consumers (docs/PROTOCOL.md, history, steps 1
                    # and 2), so a chunk can reach F a second or more after
                    # its stamp says. A plain consumer that starts while F
                    # still holds chunk S (its start) ends at an end-of-stream
                    # chunk S + 1 stamped before it started; one that starts
                    # once F holds that end-of-stream chunk starts at S too,
                    # and goes on to the next. Which one it saw, the archive
                    # cannot tell: if it ended right there (nothing handled
                    # after), either is right.
                    early = [e for e in self.eos if e == start + 1 and e > top and e < end_eos
                             and not p.get("resumed") and self.chunks[e][2] / 1e9 < p["start"]]
                    if early:
                        end_eos = early[0]
                        self.ambiguous_ends += 1
                    for e in self.eos:
                        if start <= e < end_eos and p["reg_time"] and self.chunks[e][2] / 1e9 > p["reg_time"]:
                            # The end-of-stream chunk itself reported lost:
                            # docs/PROTOCOL.md (from f25fb0b) says the
                            # consumer then goes on to the next stream's end.
                            self.violation("missed_end_eos_lost" if e in lost_set else "missed_end", id=pid,
                                           detail="end-of-stream chunk %d, published after it registered, did not end it (ended at %d)%s"
                                           % (e, end_eos, "; it reported that chunk lost" if e in lost_set else ""))
                    top = end_eos - 1
            if p.get("drained"):
                top = max(top, self.state["final_counter"])
            for s in self.nonempty(start, top):
                if s in ws:
                    continue
                if s not in lost_set:
                    if s == partial and rc == -9:
                        continue
                    self.violation("unreported_gap", id=pid, kind2=p["kind"],
                                   detail="chunk %d neither written nor reported lost (start %d, top %d)" % (s, start, top))
                elif p["kind"] == "named":
                    pub = self.chunks[s][2] / 1e9
                    if p["reg_time"] is not None and pub < p["reg_time"]:
                        self.prereg_losses += 1
                    else:
                        self.violation("named_lost", id=pid,
                                       detail="named consumer %s lost chunk %d published %.3f s after it registered"
                                       % (p["name"], s, pub - (p["reg_time"] or 0)))
            if p["kind"] == "named":
                chains.setdefault(p["name"], []).append((p, written, partial, lost_set, top, end_eos))
        # Across a named consumer's restarts: nothing skipped, at most one
        # chunk repeated after a SIGKILL.
        for name, runs in chains.items():
            for ra, rb in zip(runs, runs[1:]):
                if ra is None or rb is None:
                    continue
                (a, wa, pa, la, topa, ea), (b, wb, pb, lb, topb, eb) = ra, rb
                prev_done = max(wa + sorted(la) + ([ea] if ea else []) + [a["S"] - 1])
                skipped = self.nonempty(prev_done + 1, b["S"] - 1)
                if skipped:
                    self.violation("restart_skipped", id=b["id"], detail="%s: chunks %s between run %d (rc %s) and run %d never written"
                                   % (name, skipped[:10], a["id"], a["rc"], b["id"]))
                rep = [s for s in wb if s <= prev_done]
                self.repeats += len(rep)
                if rep and (a["rc"] != -9 or len(rep) > 1):
                    self.violation("restart_repeated", id=b["id"], detail="%s: chunks %s written again after run %d ended with rc %s"
                                   % (name, rep[:10], a["id"], a["rc"]))

    def check_history(self):
        with open(os.path.join(self.work, "archivist.done")) as f:
            done = json.load(f)
        self.arch = done
        if done["over"]:
            self.violation("history_over_depth", detail="%d samples held more than %d entries (depth.log)"
                           % (done["over"], self.depth + 1))
        entries = [int(e) for e in self.state["history_entries"]]
        final = self.state["final_counter"]
        want = list(range(max(1, final - self.depth + 1), final + 1))
        if entries != want:
            self.violation("history_at_end", detail="history holds %s, expected %d..%d" % (entries, want[0], want[-1]))

    def check_leftovers(self):
        # Temporary files are left behind only by producers killed with
        # SIGKILL (named temporary files on the FUSE mount).
        self.leftover_tmp = 0
        killed = {p.get("pid") for p in self.procs.values() if p["kind"] == "producer" and p["rc"] == -9}
        for name in self.state["bus_dir"]:
            if name in ("bus", "bus.lock", "bus.history", "bus.consumers"):
                continue
            m = re.fullmatch(r"bus\.filebus-tmp\.(\d+)\.\d+", name)
            if m and int(m.group(1)) in killed:
                self.leftover_tmp += 1
            else:
                self.violation("left_behind", detail="%s in the bus directory at the end" % name)

    def run(self):
        self.check_leftovers()
        self.check_chunks()
        self.check_consumers()
        self.check_history()
        procs = list(self.procs.values())
        cons = [p for p in procs if p["kind"] != "producer"]
        summary = {
            "counts": self.state["counts"],
            "producer_runs": sum(1 for p in procs if p["kind"] == "producer"),
            "producers_by_path": {w: sum(1 for p in procs if p["kind"] == "producer" and p["where"] == w) for w in ("disk", "mnt")},
            "consumers_by_kind_path": {"%s/%s/%s" % (k, w, "follow" if f else "plain"): sum(
                1 for p in cons if p["kind"] == k and p["where"] == w and p["follow"] == f)
                for k in ("named", "unnamed") for w in ("disk", "mnt") for f in (False, True)},
            "exit_codes": {str(rc): sum(1 for p in procs if p["rc"] == rc) for rc in sorted({p["rc"] for p in procs}, key=str)},
            "consumers_registered": sum(1 for p in cons if p["S"] is not None),
            "consumers_ended_at_eos": sum(1 for p in cons if p["rc"] == 0),
            "chunks_published": len(self.chunks),
            "chunks_nonempty": sum(1 for c in self.chunks.values() if c[1]),
            "end_of_stream_chunks": len(self.eos),
            "holes": len(self.holes),
            "final_counter": self.state["final_counter"],
            "bytes_published": sum(c[1] for c in self.chunks.values()),
            "records_published": sum(c[5] for c in self.chunks.values()),
            "bytes_checked": self.bytes_checked,
            "records_checked": self.records_checked,
            "chunks_written_by_consumers": sum(p["written_chunks"] for p in cons),
            "lost_lines": self.lost_lines,
            "lost_chunks_reported": self.lost_chunks,
            "named_reported_losses_of_chunks_published_before_registration": self.prereg_losses,
            "ended_at_an_end_of_stream_chunk_stamped_before_they_started": self.ambiguous_ends,
            "named_repeats_after_sigkill": self.repeats,
            "history_max_entries": self.arch["max_entries"],
            "history_samples": self.arch["samples"],
            "history_entries_at_end": len(self.state["history_entries"]),
            "bus_dir_at_end": self.state["bus_dir"],
            "tmp_files_of_sigkilled_producers": self.leftover_tmp,
            "other_stderr_lines": len(self.other_lines),
            "violations": len(self.v),
        }
        with open(os.path.join(self.work, "violations.json"), "w") as f:
            json.dump(self.v, f, indent=1)
        with open(os.path.join(self.work, "other-stderr.txt"), "w") as f:
            for pid, rc, line in self.other_lines:
                f.write("%05d rc=%s %s\n" % (pid, rc, line))
        with open(os.path.join(self.work, "summary.json"), "w") as f:
            json.dump(summary, f, indent=1)
        print(json.dumps(summary, indent=1))
        by_kind = {}
        for x in self.v:
            by_kind.setdefault(x["kind"], []).append(x)
        for k, xs in by_kind.items():
            print("VIOLATION %s x%d, e.g. %s" % (k, len(xs), json.dumps(xs[:3])))
        return summary


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--duration", type=float, required=True)
    r.add_argument("--work", required=True)
    r.add_argument("--binary", required=True)
    r.add_argument("--seed", type=int, default=1)
    r.add_argument("--history", type=int, default=16)
    c = sub.add_parser("check")
    c.add_argument("--work", required=True)
    c.add_argument("--history", type=int, default=16)
    a = sub.add_parser("archivist")
    a.add_argument("bus")
    a.add_argument("work")
    a.add_argument("depth", type=int)
    args = ap.parse_args()
    if args.cmd == "archivist":
        archivist(args.bus, args.work, args.depth)
    elif args.cmd == "run":
        os.makedirs(args.work)
        soak = Soak(args)
        t0 = time.time()
        try:
            soak.run()
        finally:
            subprocess.run(["fusermount", "-u", soak.mnt], stderr=subprocess.DEVNULL)
        print("soak ran %.0f s" % (time.time() - t0))
        Checker(args.work, args.history).run()
    else:
        Checker(args.work, args.history).run()


if __name__ == "__main__":
    main()
