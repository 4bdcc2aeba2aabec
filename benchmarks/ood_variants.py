"""More unknown-photo scores on the runs benchmarks/ood.py trained: which post-hoc variant is worth a place in
leafdisease/deployment/unknown.py (issue 32).

    python benchmarks/ood.py --seeds 0                        # first: the runs
    python benchmarks/ood_variants.py --seeds 0               # then: every variant on each of them

For each finished run of benchmarks/ood.py (each crop left out; plain and with outlier exposure where trained), one
forward pass over the run's training and validation photos and the known / near / chilli / no-leaf test photos
gives the logits, the penultimate features and the pooled output of every backbone block. Scored from them (higher =
more unknown), each with the threshold set on the validation photos to keep 95 % answered, as unknown.py sets it:

- msp, energy:          as unknown.py computes them;
- knn1, knn5, knn10:    distance of the normalised penultimate features to the k-th nearest training photo
                        (knn1 is unknown.py's default);
- mahalanobis:          as unknown.py (raw features, shared covariance shrunk 10 %);
- mahalanobis_normed:   the same on L2-normalised features;
- vim:                  ViM (Wang et al., 2022): the features' norm off their principal subspace (the first
                        VIM_DIMENSIONS directions), scaled, minus the logits' logsumexp;
- knn_blocks:           k-NN (k=1) on the normalised pooled outputs of blocks 2 to the last and the penultimate
                        features side by side: earlier blocks keep more of what tells one plant from another.
- knn+msp:              knn1 and msp, each as the share of validation photos scoring below it, summed: two
                        scores that fail on different photos, on one scale without a weight to tune.
- knn_imagenet:         k-NN (k=1) on the penultimate features of the ImageNet backbone before fine-tuning: what
                        tells one plant from another before training narrowed the features to the known diseases;
                        it costs a second forward pass per photo (the fine-tuned one still gives the diagnosis).

Features are cached beside each run (variants_features.npz). Writes OUT/ood_variants.md and .csv.
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from leafdisease.utils import runtime  # noqa: E402, F401, I001  (first: OMP_WAIT_POLICY before torch loads)

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from scipy.special import logsumexp  # noqa: E402

from benchmarks import ood  # noqa: E402
from benchmarks.report import header_lines, markdown_table, start_snapshot  # noqa: E402
from benchmarks.runner import mean_and_spread  # noqa: E402
from leafdisease.data import metadata as cleaned_metadata  # noqa: E402
from leafdisease.deployment import inference, unknown  # noqa: E402
from leafdisease.training import checkpoint as checkpoint_format  # noqa: E402
from leafdisease.training import models  # noqa: E402
from leafdisease.utils.atomic_io import write_csv, write_text  # noqa: E402
from leafdisease.utils.errors import cli_entry  # noqa: E402

FEATURE_FILE = "variants_features.npz"
FIRST_BLOCK = 2
VIM_DIMENSIONS = 64
SCORED = ("val", "known") + ood.SETS
POSTHOC_TRAININGS = ("plain", "outlier_exposure")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default=str(ood.SHARED / "field13"), help="field13 root (train/, val/, test/)")
    parser.add_argument("--chilli", default=str(ood.SHARED / "chilli5" / "test"), help="another crop's photos")
    parser.add_argument("--crops", nargs="+", choices=ood.CROPS, default=list(ood.CROPS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    # background_class runs hold photos of none of the known classes among their training photos: not scored here
    parser.add_argument("--training", nargs="+", choices=POSTHOC_TRAININGS, default=list(POSTHOC_TRAININGS))
    parser.add_argument("--profile", default="final")
    parser.add_argument("--work", default="benchmarks/runs/ood", help="benchmarks/ood.py's --work")
    parser.add_argument("--out", default="benchmarks/reports")
    parser.add_argument("--no-pretrained", action="store_true",
                        help="knn_imagenet on a randomly initialised backbone (tests: no ImageNet weights offline)")
    args = parser.parse_args(argv)
    args.workers, args.model = None, models.DEFAULT_MODEL  # ood.stage_commands reads them
    return args


def forward(model, checkpoint, paths, desc):
    """{logits, feat, b<i>} of readable `paths`: the penultimate features and every block's pooled output."""
    pooled = {}
    blocks = list(getattr(model, "blocks", []))
    hooks = [block.register_forward_hook(lambda module, inputs, output, index=index:
                                         pooled.__setitem__(index, output.float().mean(dim=(2, 3))))
             for index, block in enumerate(blocks)]
    to_input = inference.model_input(checkpoint, torch.device("cpu"))
    loader = torch.utils.data.DataLoader(inference.ImageFiles(paths, inference.eval_transform(checkpoint), checkpoint),
                                         batch_size=64)
    parts = {}
    with torch.no_grad():
        for images, _, reasons in loader:
            keep = torch.tensor([not reason for reason in reasons], dtype=torch.bool)
            if not keep.any():
                continue
            logits, features = inference.logits_and_features(model, to_input(images[keep]))
            for key, value in (("logits", logits), ("feat", features), *((f"b{i}", pooled[i]) for i in pooled)):
                parts.setdefault(key, []).append(value.float().numpy())
    for hook in hooks:
        hook.remove()
    print(f"{desc}: {len(paths)} photos", flush=True)
    return {key: np.concatenate(values) for key, values in parts.items()}


def imagenet_features(args, checkpoint, sets, memo):
    """{<set name>_imagenet: the ImageNet backbone's penultimate features}. The same photos at the same size give the
    same features whatever the run, so `memo` keeps each set's once per invocation."""
    key = {name: (checkpoint["img_size"], tuple(paths)) for name, paths in sets.items()}
    missing = {name: paths for name, paths in sets.items() if key[name] not in memo}
    if missing:
        backbone = models.create_model(checkpoint["model_name"], len(checkpoint["class_ids"]),
                                       pretrained=not args.no_pretrained).eval()
        for name, paths in missing.items():
            memo[key[name]] = forward(backbone, checkpoint, paths, f"ImageNet backbone {name}")["feat"]
    return {f"{name}_imagenet": memo[key[name]] for name in sets}


def run_features(args, crop, seed, training, photos, imagenet_memo):
    """The cached forward passes of one run: {set name: {logits, feat, b<i>}}, plus train targets."""
    run_dir = ood.stage_commands(args, crop, seed, training)[-1][0]
    cache = run_dir / FEATURE_FILE
    if cache.exists():
        flat = dict(np.load(cache))
    else:
        path = run_dir / "best.pth"
        checkpoint = checkpoint_format.load(path, need="weights")
        model = inference.build_model(checkpoint, path)
        metadata = cleaned_metadata.load_metadata(Path(args.work) / crop / "cleaned")
        index_of = cleaned_metadata.label_to_index(checkpoint["class_ids"])
        kept = sorted({ood.crop_of(name) for name in checkpoint["class_names"]})
        known, _, near = ood.test_photos(args.source, kept, crop)
        sets = {"train": list(metadata.train["path"]), "val": list(metadata.val["path"]), "known": known,
                "near": near, **photos}
        flat = {f"{name}_{key}": value for name, paths in sets.items()
                for key, value in forward(model, checkpoint, paths, f"{training} {crop} {name}").items()}
        flat.update(imagenet_features(args, checkpoint, sets, imagenet_memo))
        flat["train_targets"] = metadata.train["label"].map(index_of).to_numpy()
        np.savez(cache, **flat)
    return flat


def normalised(x):
    return x / np.clip(np.linalg.norm(x, axis=1, keepdims=True), 1e-12, None)


def knn_distances(reference, x, k):
    similarity = normalised(x) @ normalised(reference).T
    return np.sqrt(np.clip(2 - 2 * np.sort(similarity, axis=1)[:, -k], 0, None))


def mahalanobis_distances(reference, targets, x):
    classes = np.unique(targets)
    means = np.stack([reference[targets == label].mean(axis=0) for label in classes])
    centred = reference - means[np.searchsorted(classes, targets)]
    covariance = centred.T @ centred / max(1, len(reference) - len(classes))
    shrink = unknown.COVARIANCE_SHRINKAGE
    precision = np.linalg.inv((1 - shrink) * covariance
                              + shrink * np.trace(covariance) / len(covariance) * np.eye(len(covariance)))
    differences = x[:, None, :] - means[None]
    return np.einsum("ncd,de,nce->nc", differences, precision, differences).min(axis=1)


def vim_scores(train_features, train_logits, features, logits):
    centre = train_features.mean(axis=0)
    _, _, basis = np.linalg.svd(train_features - centre, full_matrices=False)
    # fewer where the features are few or narrow (a tiny test model): the residual must keep some of their spread
    residual_space = basis[min(VIM_DIMENSIONS, min(train_features.shape) // 2):].T
    alpha = train_logits.max(axis=1).mean() / np.linalg.norm((train_features - centre) @ residual_space, axis=1).mean()
    return alpha * np.linalg.norm((features - centre) @ residual_space, axis=1) - logsumexp(logits, axis=1)


def block_features(flat, name):
    blocks = sorted(int(key[len(name) + 2:]) for key in flat if key.startswith(f"{name}_b"))
    return np.concatenate([normalised(flat[f"{name}_b{index}"]) for index in blocks if index >= FIRST_BLOCK]
                          + [normalised(flat[f"{name}_feat"])], axis=1)


def variant_scores(flat):
    """{variant: {set name: scores}}."""
    train, targets = flat["train_feat"], flat["train_targets"]
    scores = {}
    for name in SCORED:
        features, logits = flat[f"{name}_feat"], flat[f"{name}_logits"]
        by_variant = {"msp": 1 - np.exp(logits.max(axis=1) - logsumexp(logits, axis=1)),
                      "energy": -logsumexp(logits, axis=1),
                      "knn1": knn_distances(train, features, 1), "knn5": knn_distances(train, features, 5),
                      "knn10": knn_distances(train, features, 10),
                      "mahalanobis": mahalanobis_distances(train, targets, features),
                      "mahalanobis_normed": mahalanobis_distances(normalised(train), targets, normalised(features)),
                      "vim": vim_scores(train, flat["train_logits"], features, logits)}
        if any(key.startswith(f"{name}_b") for key in flat):
            by_variant["knn_blocks"] = knn_distances(block_features(flat, "train"), block_features(flat, name), 1)
        if f"{name}_imagenet" in flat:
            by_variant["knn_imagenet"] = knn_distances(flat["train_imagenet"], flat[f"{name}_imagenet"], 1)
        for variant, values in by_variant.items():
            scores.setdefault(variant, {})[name] = values
    scores["knn+msp"] = {name: sum(ood.validation_share(scores[variant]["val"], scores[variant][name])
                                   for variant in ("knn1", "msp")) for name in SCORED}
    return scores


def evaluate_variants(flat, crop, seed, training):
    rows = []
    for variant, scores in variant_scores(flat).items():
        threshold = unknown.threshold_at(scores["val"], unknown.DEFAULT_KEEP)
        row = {"training": training, "crop_left_out": crop, "seed": seed, "variant": variant,
               "known_answered": float(np.mean(scores["known"] <= threshold))}
        for name in ood.SETS:
            row[f"{name}_auroc"] = unknown.auroc(scores["known"], scores[name])
            row[f"{name}_diagnosed"] = float(np.mean(scores[name] <= threshold))
        rows.append(row)
    return rows


def summary_table(runs):
    rows = []
    for (training, variant), group in runs.groupby(["training", "variant"], sort=False):
        def cell(column):
            mean, spread = mean_and_spread(100 * group[column].to_numpy(dtype=float))
            return f"{mean:.1f}" + ("" if np.isnan(spread) else f" ± {spread:.1f}")
        rows.append({"training": training.replace("_", " "), "variant": variant, "runs": len(group),
                     **{f"{name} {kind}": cell(f"{name}_{column}") for name in ood.SETS
                        for kind, column in (("AUROC", "auroc"), ("diagnosed %", "diagnosed"))},
                     "known answered %": cell("known_answered")})
    return pd.DataFrame(rows)


@cli_entry
def main(argv=None):
    args = parse_args(argv)
    argv = sys.argv[1:] if argv is None else argv
    started = start_snapshot()
    photos = {"chilli": sorted(str(path) for path in Path(args.chilli).rglob("*") if path.is_file()),
              "noleaf": [str(path) for path in ood.write_noleaf_photos(Path(args.work) / "noleaf", 100)]}
    rows, imagenet_memo = [], {}
    for training, seed, crop in ((t, s, c) for t in args.training for s in args.seeds for c in args.crops):
        if not (ood.stage_commands(args, crop, seed, training)[-1][0] / "best.pth").exists():
            continue
        rows += evaluate_variants(run_features(args, crop, seed, training, photos, imagenet_memo), crop, seed,
                                  training)
    runs = pd.DataFrame(rows)
    if runs.empty:
        print("no finished benchmarks/ood.py run under --work")
        return
    write_csv(Path(args.out) / "ood_variants.csv", runs)
    lines = header_lines("Unknown photos: post-hoc score variants on benchmarks/ood.py's runs", started,
                         "benchmarks/ood_variants.py", argv)
    lines += ["- Each run of benchmarks/ood.py (field13 without one crop); every variant's threshold set on the "
              f"run's validation photos to keep {unknown.DEFAULT_KEEP:.0%} answered. Mean ± standard deviation over "
              "the runs, in %.",
              "- Runs: " + ", ".join(sorted({f"{t.replace('_', ' ')}: {c} seed {s}" for t, c, s
                                             in zip(runs.training, runs.crop_left_out, runs.seed)})) + ".", ""]
    lines += markdown_table(summary_table(runs))
    write_text(Path(args.out) / "ood_variants.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
