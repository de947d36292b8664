"""`tessera demo --json` runs headless and reports a computed MNIST accuracy
of at least 97 % on the bundled test digits (issue 2, item 6)."""
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
    print(f"demo: {s['frames']} digits, accuracy {100 * s['accuracy']:.2f}%, {s['ips']:.0f} images/s")
    if s["frames"] != 1000 or s["accuracy"] < 0.97:
        print("demo accuracy below 97 % or wrong frame count", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
