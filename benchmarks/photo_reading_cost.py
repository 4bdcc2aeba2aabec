"""Where a large photo's training time goes: reading and augmenting it, by reading, beside the training step.

    python benchmarks/photo_reading_cost.py --cleaned-full DIR --cleaned-cached DIR128 DIR192   # chilli5, cleaned

benchmarks/large_photos_real.py times whole runs; this splits off the loader's share. For every training photo of
a cleaned dataset (train.csv), in one process and one thread (a loader worker's view), at each --sizes:

- full:    the source photo decoded in full (train.py --photo-reading full), then the strong augmentation;
- reduced: the source photo decoded reduced to its working size (the default reading without a cache);
- cached:  the --max-side auto copies of the cleaned folder for that size (its train.csv's paths), read as they are.

Reported: milliseconds per photo to read, to augment, and both; --rounds passes, the fastest kept (the page cache
is warm after the first). Writes OUT/photo_reading_cost.md and .csv.
"""
import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import cv2  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

import dataset  # noqa: E402
from benchmarks.report import header_lines, markdown_table, start_snapshot  # noqa: E402
from leafdisease.data import metadata as cleaned_metadata  # noqa: E402
from leafdisease.utils.atomic_io import write_csv, write_text  # noqa: E402
from leafdisease.utils.errors import cli_entry  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cleaned-full", required=True, help="a cleaned dataset without copies (MAX_SIDE=off)")
    parser.add_argument("--cleaned-cached", nargs="+", required=True,
                        help="the same cleaned with --max-side auto for each of --sizes, in their order")
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 192])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", default="benchmarks/reports")
    args = parser.parse_args(argv)
    if len(args.cleaned_cached) != len(args.sizes):
        parser.error(f"--cleaned-cached: one folder for each of the {len(args.sizes)} --sizes")
    return args


def timed_pass(paths, short_side, transform):
    """(read ms, augment ms) per photo over `paths`."""
    read_s = augment_s = 0.0
    for path in paths:
        started = time.perf_counter()
        image = dataset.read_image_rgb(path, short_side)
        read_s += time.perf_counter() - started
        started = time.perf_counter()
        transform(image=image)
        augment_s += time.perf_counter() - started
    return 1000 * read_s / len(paths), 1000 * augment_s / len(paths)


@cli_entry
def main(argv=None):
    args = parse_args(argv)
    argv = sys.argv[1:] if argv is None else argv
    started = start_snapshot()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    full_paths = list(cleaned_metadata.load_metadata(args.cleaned_full).train["path"])
    rows = []
    for size, cached in zip(args.sizes, args.cleaned_cached):
        cached_paths = list(cleaned_metadata.load_metadata(cached).train["path"])
        transform = dataset.build_transform("strong", size)
        working = dataset.short_side_for_crops(size)
        for reading, paths, short_side in (("full", full_paths, None), ("reduced", full_paths, working),
                                           ("cached", cached_paths, working)):
            read_ms, augment_ms = min((timed_pass(paths, short_side, transform) for _ in range(args.rounds)),
                                      key=sum)
            rows.append({"img_size": size, "reading": reading, "photos": len(paths), "read_ms": read_ms,
                         "augment_ms": augment_ms, "total_ms": read_ms + augment_ms})
            print(f"{size} px {reading}: read {read_ms:.1f} ms + augment {augment_ms:.1f} ms per photo", flush=True)
    table = pd.DataFrame(rows)
    write_csv(Path(args.out) / "photo_reading_cost.csv", table)
    lines = header_lines("Reading and augmenting a large photo, by reading", started,
                         "benchmarks/photo_reading_cost.py", argv)
    lines += [f"- Training photos of {args.cleaned_full} (sources) and {', '.join(args.cleaned_cached)} (copies); one thread; "
              f"the fastest of {args.rounds} passes. Milliseconds per photo.", ""]
    lines += markdown_table(table.round(2))
    write_text(Path(args.out) / "photo_reading_cost.md", "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
