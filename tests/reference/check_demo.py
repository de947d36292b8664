"""`tessera demo --json` runs the mesh headless (a server, 3 native WebRTC
peers and a coordinator on loopback) and reports: every frame back (none
lost), outputs equal to a local run, a computed MNIST accuracy of at least
97 % on the bundled test digits, and the larger model matching too.
Run it inside a loopback-only network namespace (./run test does)."""
import argparse
import json
import subprocess
import sys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tessera", required=True)
    args = ap.parse_args()
    out = subprocess.run([args.tessera, "demo", "--json"], check=True, capture_output=True, text=True).stdout
    s = json.loads(out.strip().splitlines()[-1])
    print(f"demo: {s['frames']} digits over {len(s['peers'])} peers, accuracy {100 * s['accuracy']:.2f}%, "
          f"{s['ips']:.0f} images/s (one device {s['single_device_ips']:.0f}), lost {s['lost']}, match_local {s['match_local']}")
    larger = s.get("larger") or {}
    if larger:
        print(f"      {larger['model']}: {larger['frames']} frames, {larger['ips']:.2f} images/s, lost {larger['lost']}, match_local {larger['match_local']}")
    problems = []
    if s["frames"] != 1000 or s["lost"] != 0:
        problems.append("frames lost")
    if not s["match_local"] or (larger and not larger["match_local"]):
        problems.append("mesh outputs differ from the local run")
    if s["accuracy"] < 0.97:
        problems.append("accuracy below 97 %")
    if len(s["peers"]) < 3 or any(p["weight_bytes"] >= s["model_weight_bytes"] for p in s["peers"]):
        problems.append("a peer holds the whole model (model secret broken)")
    if problems:
        print("demo: " + "; ".join(problems), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
