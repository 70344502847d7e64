#!/usr/bin/env python3
# usage: python3 results/lossy-fuse-bursts.py FILEBUS ROUNDS
# A lossy consumer on a bindfs mount (polling every 1 ms), a producer underneath
# publishing 300 chunks of 900 bytes per round; a round fails if the consumer
# has not written the last chunk within 10 s. Prints failures per round.
import os, subprocess, sys, time, tempfile
FB = sys.argv[1]; rounds = int(sys.argv[2])
root = tempfile.mkdtemp(prefix="lf.", dir="/tmp"); under = root+"/under"; mnt = root+"/mnt"
os.makedirs(under); os.makedirs(mnt)
subprocess.check_call(["bindfs","--multithreaded","--enable-lock-forwarding",under,mnt])
fails = 0
try:
    for r in range(rounds):
        for n in os.listdir(under):
            os.unlink(os.path.join(under,n))
        out = open(root+"/out","wb")
        c = subprocess.Popen([FB,"--filename",mnt+"/bus","consumer","--sleep-interval","0.001"], stdout=out, stderr=subprocess.DEVNULL)
        time.sleep(0.2)
        data = b"".join(b"%08d" % i + b"x"*892 for i in range(300))
        p = subprocess.run([FB,"--filename",under+"/bus","--block-size","900","producer"], input=data)
        last = b"%08d" % 299
        ok = False
        t = time.time()
        while time.time() - t < 10:
            o = open(root+"/out","rb").read()
            if o.endswith(last + b"x"*892): ok = True; break
            time.sleep(0.05)
        c.kill(); c.wait(); out.close()
        if not ok:
            fails += 1; o = open(root+"/out","rb").read(); print("round", r, [o[i:i+8] for i in range(0,len(o),900)], flush=True)
    print(FB, "fails", fails, "of", rounds)
finally:
    subprocess.call(["fusermount","-u",mnt])
