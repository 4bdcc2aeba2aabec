"""leafdisease: training and using long-tailed, fine-grained crop leaf disease classifiers.

The scripts at the repository's root (train.py, analyze_data.py, predict.py, ...) are what a user runs; this
package is what they are made of, one sub-package per concept:

- data: reading datasets in their layouts, cleaning, photo reading and evaluation transforms, class weights and
  shot groups, the class hierarchy, the synthetic demo generator.
- training: models, losses, the epoch loop, the checkpoint format, recipes, multi-process runs, run logs.
- evaluation: metrics, evaluation reports of a labelled set, plots.
- deployment: prediction, export formats (timm folder, ONNX), Grad-CAM, the diagnosis page's logic.
- utils: one-line errors, atomic file writes, command-line helpers, progress bars, the runtime (threads, devices).

Nothing in it imports a root script; sub-packages import no more than the modules they use (importing
leafdisease.data.longtail loads no torch).
"""
