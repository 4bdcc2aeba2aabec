"""Figures about training runs: learning curves, confusion matrices, augmented-batch grids."""
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from leafdisease.data import hierarchy as label_hierarchy  # noqa: E402
from leafdisease.utils.atomic_io import save_figure  # noqa: E402


def plot_training_curves(history, path, title="Training curves"):
    """Loss, accuracy vs balanced accuracy, and learning rate per epoch, from a history DataFrame."""
    epochs = history["epoch"]
    fig, (loss_ax, acc_ax, lr_ax) = plt.subplots(1, 3, figsize=(16, 4.8), layout="constrained")
    loss_ax.plot(epochs, history["train_loss"], "o-", label="train loss (weighted)")
    loss_ax.plot(epochs, history["val_loss"], "o-", label="val loss (unweighted CE)")
    loss_ax.set(title="Loss", xlabel="epoch", ylabel="cross-entropy")
    acc_ax.plot(epochs, history["val_acc"], "o-", label="val accuracy")
    acc_ax.plot(epochs, history["val_balanced_acc"], "o-", linewidth=2.5, label="val balanced accuracy")
    acc_ax.plot(epochs, history["val_macro_f1"], "--", label="val macro-F1")
    if "val_few_acc" in history and history["val_few_acc"].notna().any():
        acc_ax.plot(epochs, history["val_few_acc"], ":", label="val few-shot accuracy")
    for column, label in (("val_disease_acc", "val disease accuracy (severities merged)"),
                          ("val_crop_acc", "val crop accuracy")):
        if column in history:
            acc_ax.plot(epochs, history[column], "-.", linewidth=1, label=label)
    acc_ax.set(title="Validation accuracy (balanced = mean per-class recall)", xlabel="epoch", ylabel="score",
               ylim=(0, 1))
    lr_ax.plot(epochs, history["lr"], "o-", color="tab:gray")
    lr_ax.set(title="Learning rate (head, end of epoch)", xlabel="epoch", ylabel="learning rate (log scale)",
              yscale="log")
    for axis in (loss_ax, acc_ax):
        axis.legend(fontsize=8)
    for axis in (loss_ax, acc_ax, lr_ax):
        axis.grid(alpha=0.3)
        axis.xaxis.get_major_locator().set_params(integer=True)
    fig.suptitle(title)
    save_figure(fig, path)


def plot_batch_grid(images, labels, class_names, path, title="First training batch after augmentation"):
    """A grid of a loader's images (uint8 CHW, as the augmentation left them), each titled with its class."""
    images = np.asarray(images)
    count = min(len(images), 32)
    columns = min(8, count)
    rows = math.ceil(count / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(2.0 * columns, 2.2 * rows), squeeze=False)
    for index, axis in enumerate(axes.flat):
        axis.axis("off")
        if index >= count:
            continue
        picture = images[index].transpose(1, 2, 0)
        axis.imshow(picture)
        axis.set_title(abbreviate(class_names[labels[index]], 24), fontsize=7)
    fig.suptitle(title)
    save_figure(fig, path)


# ----------------------------------------------------------------------------------------------------
# Figures of visualize_training.py: one run's per-class results, and several runs side by side
# ----------------------------------------------------------------------------------------------------
SHOT_GROUP_COLORS = {"many": "tab:blue", "medium": "tab:orange", "few": "tab:red"}


def abbreviate(name, max_length=24):
    """Shorten from the middle and keep the last '_' part whole: AI Challenger names differ only at the end
    (Tomato_septoria_leaf_spot_general / _serious), which cutting the end off would lose."""
    if len(name) <= max_length:
        return name
    tail = name[name.rfind("_"):] if "_" in name else ""
    if not tail or len(tail) > max_length // 2:
        tail = name[-(max_length // 2):]
    return name[: max_length - 1 - len(tail)] + "…" + tail


def run_colors(count):
    """One colour per run, the same in every comparison figure."""
    palette = plt.get_cmap("tab10" if count <= 10 else "tab20")
    return [palette(index % palette.N) for index in range(count)]


def _class_axis_height(num_classes):
    return max(4.0, 0.2 * num_classes + 2.0)


def plot_per_class_recall(classes, group_labels, path, title):
    """Training images (log scale) and validation recall per class, head classes at the top.

    classes: DataFrame with name, train_count, group, recall (NaN: no validation image), support, correct.
    group_labels: {"many": "many-shot (>100 training images)", ...} for the legend.
    """
    classes = classes.sort_values("train_count", ascending=False, kind="stable").reset_index(drop=True)
    positions = np.arange(len(classes))
    colors = [SHOT_GROUP_COLORS[group] for group in classes["group"]]
    fig, (count_ax, recall_ax) = plt.subplots(1, 2, figsize=(14, _class_axis_height(len(classes))), sharey=True,
                                              gridspec_kw={"width_ratios": [1, 3]}, layout="constrained")
    count_ax.barh(positions, classes["train_count"], color=colors, height=0.75)
    count_ax.set_xscale("log")
    count_ax.set_xlim(left=0.7)
    count_ax.set(title="Training images", xlabel="images (log scale)")
    count_ax.set_yticks(positions, [f"{abbreviate(name, 40)} ({count})"
                                    for name, count in zip(classes["name"], classes["train_count"])], fontsize=8)
    count_ax.set_ylabel("class (training images), most to fewest training images")
    count_ax.set_ylim(len(classes) - 0.5, -0.5)

    recall_ax.barh(positions, classes["recall"].fillna(0), color=colors, height=0.75)
    for position, row in zip(positions, classes.itertuples()):
        text = "no validation images" if row.support == 0 else f"{row.correct}/{row.support}"
        recall_ax.text((0 if np.isnan(row.recall) else row.recall) + 0.01, position, text, va="center", fontsize=7)
    present = classes["support"] > 0
    balanced = classes.loc[present, "recall"].mean()
    recall_ax.axvline(balanced, color="black", linestyle="--", linewidth=1.2,
                      label=f"balanced accuracy (mean recall) {balanced:.3f}")
    handles = [Patch(color=SHOT_GROUP_COLORS[group],
                     label=f"{group_labels[group]}: {int((classes['group'] == group).sum())} classes, mean recall "
                           + (f"{classes.loc[present & (classes['group'] == group), 'recall'].mean():.3f}"
                              if (present & (classes["group"] == group)).any() else "n/a"))
               for group in SHOT_GROUP_COLORS]
    fig.legend(handles=handles + recall_ax.get_legend_handles_labels()[0], loc="outside lower center", ncol=2,
               fontsize=9)
    recall_ax.set_xlim(0, 1.12)
    recall_ax.set(title="Validation recall (text: correct / validation images)", xlabel="recall")
    for axis in (count_ax, recall_ax):
        axis.grid(axis="x", alpha=0.3)
    fig.suptitle(title)
    save_figure(fig, path)


def plot_confusion_matrix(confusion, labels, path, title, row_labels=None, min_annotated=0.1, hierarchy=None):
    """Row-normalised confusion matrix, big enough for 61 readable labels; cells holding at least
    `min_annotated` of their row are written in per cent. row_labels (default: labels) name the true classes.
    hierarchy (hierarchy.Hierarchy): classes ordered by crop, each crop a block between lines, named on top, so an
    error within a crop (a severity, a sibling disease) lies inside a block and one across crops outside."""
    confusion = np.asarray(confusion, dtype=np.float64)
    true_class_caption = "true class" + (" (validation images)" if row_labels else "")
    row_labels = row_labels or labels
    blocks = []
    if hierarchy is not None:
        order, blocks = label_hierarchy.crop_blocks(hierarchy)
        confusion = confusion[np.ix_(order, order)]
        labels, row_labels = [labels[index] for index in order], [row_labels[index] for index in order]
    row_sums = confusion.sum(axis=1, keepdims=True)
    normalised = np.divide(confusion, row_sums, out=np.zeros_like(confusion), where=row_sums > 0)
    # An empty row is a class with no image to score (the official download's class 45), not one never recognised.
    row_labels = [label + (" (no images)" if total == 0 else "") for label, total in zip(row_labels, row_sums[:, 0])]
    num_classes = len(labels)
    cell = 0.28 if num_classes > 20 else 0.5
    side = max(6.0, cell * num_classes + 3.5)
    fig, axis = plt.subplots(figsize=(side + 1.5, side))
    image = axis.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    font_size = 7 if num_classes > 20 else 9
    axis.set_xticks(range(num_classes), labels, rotation=90, fontsize=font_size)
    axis.set_yticks(range(num_classes), row_labels, fontsize=font_size)
    axis.set_xticks(np.arange(num_classes + 1) - 0.5, minor=True)
    axis.set_yticks(np.arange(num_classes + 1) - 0.5, minor=True)
    axis.grid(which="minor", color="0.85", linewidth=0.4)
    axis.tick_params(which="minor", length=0)
    for true_index, predicted_index in zip(*np.nonzero(normalised >= min_annotated)):
        value = normalised[true_index, predicted_index]
        axis.text(predicted_index, true_index, f"{value * 100:.0f}", ha="center", va="center",
                  fontsize=font_size - 1, color="white" if value > 0.6 else "black")
    for _, start, _ in blocks[1:]:
        axis.axhline(start - 0.5, color="0.2", linewidth=1.2)
        axis.axvline(start - 0.5, color="0.2", linewidth=1.2)
    if blocks:
        crops_axis = axis.secondary_xaxis("top")
        crops_axis.set_xticks([(start + end - 1) / 2 for _, start, end in blocks],
                              [name for name, _, _ in blocks], fontsize=font_size + 1, fontweight="bold")
        crops_axis.tick_params(length=0)
    axis.set(xlabel="predicted class", ylabel=true_class_caption, title=title + (", classes by crop" if blocks else ""))
    fig.colorbar(image, ax=axis, fraction=0.046, pad=0.02,
                 label=f"fraction of the true class (cells >= {min_annotated:.0%} written in %)")
    save_figure(fig, path)


def plot_compared_curves(curves, path, title):
    """Validation balanced accuracy, accuracy and loss of several runs on one epoch axis.

    curves: list of dicts with label, color, history (DataFrame with x, val_balanced_acc, val_acc, val_loss,
    train_loss), best_x, start_x (0, or where a run continues its parent) and inherited: list of
    (label, DataFrame) of ancestors not compared themselves, drawn faint in the run's colour.
    """
    fig, axes = plt.subplots(1, 3, figsize=(18, 5.5), layout="constrained")
    panels = (("val_balanced_acc", "Validation balanced accuracy (mean per-class recall)", "score"),
              ("val_acc", "Validation accuracy", "score"),
              ("val_loss", "Loss", "cross-entropy"))
    handles = []
    for curve in curves:
        handles.append(Line2D([], [], color=curve["color"], marker="o", markersize=4, label=curve["label"]))
        handles += [Line2D([], [], color=curve["color"], marker="o", markersize=3, alpha=0.3, label=label)
                    for label, _ in curve["inherited"]]
    for axis, (column, panel_title, ylabel) in zip(axes, panels):
        for curve in curves:
            history, color = curve["history"], curve["color"]
            for _, ancestor in curve["inherited"]:
                axis.plot(ancestor["x"], ancestor[column], "o-", color=color, alpha=0.3, markersize=3)
            axis.plot(history["x"], history[column], "o-", color=color, markersize=4)
            if column == "val_loss":
                axis.plot(history["x"], history["train_loss"], "--", color=color, alpha=0.8)
            else:
                best = history.loc[history["x"] == curve["best_x"], column]
                axis.plot([curve["best_x"]] * len(best), best, "*", color=color, markersize=15, markeredgecolor="black")
            if curve["start_x"] > 0:
                axis.axvline(curve["start_x"] + 0.5, color=color, linestyle=":", linewidth=1.2)
        if column != "val_loss":
            values = np.concatenate([curve["history"][column].to_numpy(dtype=float) for curve in curves])
            highest = np.nanmax(values) if np.isfinite(values).any() else 1.0
            axis.set_ylim(0, min(1.02, highest * 1.15 + 0.02))
        axis.set(title=panel_title, xlabel="epoch (a continued run counts on from its parent's epochs)", ylabel=ylabel)
        axis.grid(alpha=0.3)
        axis.xaxis.get_major_locator().set_params(integer=True)
    handles += [Line2D([], [], linestyle="", marker="*", markersize=12, color="white", markeredgecolor="black",
                       label="best epoch"),
                Line2D([], [], color="gray", linestyle="--", label="training loss (class-weighted)"),
                Line2D([], [], color="gray", label="validation (loss: unweighted)"),
                Line2D([], [], color="gray", linestyle=":", label="a run initialised from another starts here")]
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 5), fontsize=9)
    fig.suptitle(title)
    save_figure(fig, path)


def plot_group_accuracy(values, colors, group_labels, path, title):
    """Grouped bars: many/medium/few-shot accuracy (rows of `values`: runs, columns: groups)."""
    groups = list(values.columns)
    width = 0.8 / len(values)
    fig, axis = plt.subplots(figsize=(max(8.0, 1.2 * len(values) * len(groups) + 2), 5.5))
    for index, (label, row) in enumerate(values.iterrows()):
        positions = np.arange(len(groups)) + (index - (len(values) - 1) / 2) * width
        bars = axis.bar(positions, row.fillna(0).to_numpy(), width=width * 0.95, color=colors[index], label=label)
        for bar, value in zip(bars, row):
            axis.text(bar.get_x() + bar.get_width() / 2, (0 if np.isnan(value) else value) + 0.01,
                      "n/a" if np.isnan(value) else f"{value:.3f}", ha="center", va="bottom", fontsize=8)
    axis.set_xticks(range(len(groups)), [group_labels[group] for group in groups])
    axis.set(ylim=(0, 1.1), ylabel="mean recall of the group's classes", title=title)
    axis.legend(fontsize=8)
    axis.grid(axis="y", alpha=0.3)
    save_figure(fig, path)


def plot_recall_change(classes, first_label, last_label, first_color, last_color, path, title):
    """Per-class recall change between two runs, sorted by change, each bar in the colour of the run that is
    better on that class. classes: DataFrame with name, train_count, recall_first, recall_last, change."""
    classes = classes.sort_values("change", ascending=False, kind="stable").reset_index(drop=True)
    positions = np.arange(len(classes))
    fig, axis = plt.subplots(figsize=(12, _class_axis_height(len(classes))))
    colors = [last_color if change > 0 else first_color if change < 0 else "0.6" for change in classes["change"]]
    axis.barh(positions, classes["change"], color=colors, height=0.75)
    for position, row in zip(positions, classes.itertuples()):
        axis.text(row.change + (0.01 if row.change >= 0 else -0.01), position,
                  f"{row.recall_first:.2f} → {row.recall_last:.2f}", va="center",
                  ha="left" if row.change >= 0 else "right", fontsize=7)
    axis.set_yticks(positions, [f"{abbreviate(name, 40)} ({count})"
                                for name, count in zip(classes["name"], classes["train_count"])], fontsize=8)
    axis.set_ylim(len(classes) - 0.5, -0.5)
    axis.axvline(0, color="black", linewidth=0.8)
    limit = max(0.1, float(classes["change"].abs().max())) * 1.35
    axis.set_xlim(-limit, limit)
    axis.legend(handles=[Patch(color=last_color, label=f"better in {last_label}"),
                         Patch(color=first_color, label=f"better in {first_label}")], loc="lower right", fontsize=8)
    axis.set(xlabel=f"recall change ({last_label} minus {first_label}); text: recall before → after",
             ylabel="class (training images)", title=title)
    axis.grid(axis="x", alpha=0.3)
    save_figure(fig, path)


def plot_tau_curve(rows, chosen_tau, margin, metric, path, title):
    """Balanced, plain and shot-group accuracy against the logit-adjustment strength tau, with the chosen tau and
    the band within which a gain in the target `metric` over tau 0 is no more than one validation image."""
    taus = [row["tau"] for row in rows]
    fig, axis = plt.subplots(figsize=(8, 4.5))
    for name, label, color in (("balanced_acc", "balanced accuracy", "black"), ("acc", "accuracy", "tab:purple"),
                               ("prior_acc", "accuracy at training prior", "tab:brown")):
        axis.plot(taus, [row[name] for row in rows], marker="o" if name == metric else ".", color=color,
                  linewidth=2 if name == metric else 1, label=label + (" (target)" if name == metric else ""))
    for group, color in SHOT_GROUP_COLORS.items():
        axis.plot(taus, [row[f"{group}_acc"] for row in rows], marker=".", color=color, alpha=0.8, label=f"{group}-shot")
    plain = next(row[metric] for row in rows if row["tau"] == 0.0)
    axis.axhspan(plain - margin, plain + margin, color="grey", alpha=0.15, label="tau 0 ± one validation image")
    axis.axvline(chosen_tau, color="tab:green", linestyle="--", label=f"chosen tau {chosen_tau:g}")
    axis.set(xlabel="tau (logits - tau x log prior)", ylabel="validation accuracy", title=title, ylim=(0, 1.02))
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8, loc="lower left")
    save_figure(fig, path)


def plot_misclassified(examples, path, title, columns=6):
    """A grid of misclassified photos, each titled 'true -> predicted (probability)'; a note when there are none."""
    rows = max(1, math.ceil(len(examples) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(2.4 * columns, 2.6 * rows), squeeze=False)
    for index, axis in enumerate(axes.flat):
        axis.axis("off")
        if index < len(examples):
            image, true_name, predicted_name, probability = examples[index]
            axis.imshow(image)
            axis.set_title(f"{abbreviate(true_name, 22)}\n-> {abbreviate(predicted_name, 22)} ({probability:.2f})",
                           fontsize=7, color="tab:red")
    if not examples:
        axes.flat[0].text(0.5, 0.5, "no misclassified images", ha="center", va="center")
    fig.suptitle(title)
    save_figure(fig, path)


def plot_coverage(probabilities, targets, rows, path, title):
    """Accuracy against coverage: the curve over every confidence cut-off, the reported thresholds marked."""
    probabilities, targets = np.asarray(probabilities), np.asarray(targets)
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == targets
    order = np.argsort(-confidence, kind="stable")
    count = np.arange(1, len(order) + 1)
    fig, axis = plt.subplots(figsize=(7.5, 5))
    axis.plot(count / len(order), np.cumsum(correct[order]) / count, color="tab:blue",
              label="accuracy of the most confident photos")
    for row in rows:
        if row["images"]:
            axis.scatter(row["coverage"], row["accuracy"], color="tab:red", zorder=3)
            axis.annotate(f"P={row['min_confidence']:g}", (row["coverage"], row["accuracy"]), fontsize=8,
                          textcoords="offset points", xytext=(4, -10))
    axis.set_xlim(0, 1.02)
    axis.set_xlabel("coverage: share of photos given a class (the rest: 'unknown' under --min-confidence P)")
    axis.set_ylabel("accuracy on those photos")
    axis.grid(alpha=0.3)
    axis.legend(loc="lower left", fontsize=9)
    axis.set_title(title)
    save_figure(fig, path)


AUDIT_KIND_COLORS = {"another_class": "tab:red", "only_photo": "tab:purple", "unusable": "tab:gray"}
AUDIT_KIND_TEXT = {"another_class": "probably another class", "only_photo": "only photo of its class",
                   "unusable": "not a leaf / unusable?"}


def plot_audit_contact_sheet(entries, path, title, columns=6):
    """The label audit's top suspects, in the order given (few-shot classes first): each photo with its kind, its
    given label (and its class's training photos) and the suggested one written under it, framed in its shot
    group's colour. entries: [(image HxWx3, kind, shot group, given name, class size, suggested name, suggested
    probability, label quality (NaN: none), distance ratio)]."""
    rows = max(1, math.ceil(len(entries) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(2.9 * columns, 3.9 * rows + 0.8), squeeze=False)
    for index, axis in enumerate(axes.flat):
        axis.set_xticks([])
        axis.set_yticks([])
        if index >= len(entries):
            axis.axis("off")
            continue
        image, kind, group, given, size, suggested, probability, score, distance_ratio = entries[index]
        axis.imshow(image)
        for spine in axis.spines.values():
            spine.set_edgecolor(SHOT_GROUP_COLORS.get(group, "black"))
            spine.set_linewidth(4)
        axis.set_title(f"#{index + 1} {AUDIT_KIND_TEXT.get(kind, kind)}", fontsize=8,
                       color=AUDIT_KIND_COLORS.get(kind, "black"))
        suggestion = (f"suggested: {abbreviate(suggested, 26)} ({probability:.2f})" if kind != "unusable"
                      else f"closest: {abbreviate(suggested, 26)} ({probability:.2f})")
        measure = (f"{distance_ratio:.1f}x a typical photo's distance" if kind == "unusable"
                   else f"label quality {score:.3f}" if score == score else "no other photo to check it")
        axis.set_xlabel(f"given: {abbreviate(given, 26)}\n({size} photos, {group}-shot)\n{suggestion}\n{measure}",
                        fontsize=7)
    if not entries:
        axes.flat[0].axis("off")
        axes.flat[0].text(0.5, 0.5, "no suspect photos", ha="center", va="center")
    handles = [Patch(facecolor="white", edgecolor=color, linewidth=3, label=f"{group}-shot class (frame)")
               for group, color in SHOT_GROUP_COLORS.items()]
    fig.legend(handles=handles, loc="upper right", fontsize=8, ncol=3)
    fig.suptitle(title, fontsize=10, x=0.02, ha="left")
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.6 / (3.9 * rows + 0.8)), h_pad=1.2)
    save_figure(fig, path)
