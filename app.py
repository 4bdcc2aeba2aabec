"""A diagnosis page for a trained model: drop leaf photos (or take one with a phone's camera), see for each the
top-5 classes as bars, the reading ('not sure' below a threshold) and the Grad-CAM heat map beside the photo.

  python app.py                                                    # checkpoints/task1_stage2/best.pth on :7860
  python app.py --checkpoint exported/ --host 0.0.0.0 --port 8080  # an export.py folder (or its model.onnx)

Open http://127.0.0.1:7860 in a browser. The page says which model it is (name, classes, training date,
validation balanced accuracy, image size). Answers are predict.py's for the same checkpoint (diagnosis.py runs
predict.py's own path); a file predict.py would reject (not an image, truncated, too many pixels) gets its
reason on the page. Fully offline: Gradio's analytics are off, no share link, fonts are Gradio's bundled ones.
The same answers come as data from the API (gradio_client: Client(URL).predict(files, min_confidence,
api_name="/diagnose")), listed under "Use via API" at the foot of the page.
"""
from leafdisease.utils import runtime  # noqa: I001  (first: it sets OMP_WAIT_POLICY before anything loads torch)

import argparse
import errno
import os
import socket
import sys
from pathlib import Path

from leafdisease.data import hierarchy
from leafdisease.deployment import diagnosis
from leafdisease.utils import cli
from leafdisease.utils.errors import UserError, cli_entry

# Before gradio is imported: some of its modules read it at import time.
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"

DEFAULT_CHECKPOINT = "checkpoints/task1_stage2/best.pth"
DEFAULT_PORT = 7860  # Gradio's
# Uploads above this are refused by the page before they reach the model; a phone photo is a few MB.
MAX_UPLOAD_SIZE = "50mb"
# Uploaded photos and the page's images are deleted from Gradio's cache after an hour (checked hourly).
CACHE_LIFETIME_S = 3600
# A flat model's reading is its class alone, titled as the diagnosis; with a hierarchy the diagnosis comes first.
LEVEL_TITLES = {diagnosis.CLASS_LEVEL: "Diagnosis", diagnosis.DIAGNOSIS_LEVEL: "Diagnosis"}
OPTION_RULES = {"port": cli.Range(1, 65535, integer=True), "min_confidence": cli.Range(0, 1)}
CSS = """
.photo-image .image-frame, .photo-image img { width: 100%; height: 100%; object-fit: contain; }
.photo-answer .confidence-set { font-family: var(--font); }
.reading h3 { margin: 0 0 0.3rem 0; }
.reading p { font-size: 1.05rem; margin: 0.2rem 0; }
.problem { border-left: 4px solid #dc2626; padding-left: 0.6rem; }
.unknown-photo { border-left: 4px solid #9ca3af; padding-left: 0.6rem; }
.closest-classes { opacity: 0.45; }
"""
UNKNOWN_PHOTO_TITLE = "This does not look like a leaf this model knows"


def parse_args(argv=None):
    parser = cli.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=DEFAULT_CHECKPOINT,
                        help="a train.py best.pth, or an export.py folder or its model.onnx (no heat map for ONNX)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to serve on (0.0.0.0: every interface, e.g. for a phone on the same network)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--min-confidence", type=float, default=0.0,
                        help="where the page's 'not sure' slider starts (as predict.py --min-confidence; "
                             "0 = always answer)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    args = parser.parse_args(argv)
    cli.check_options(parser, args, OPTION_RULES)
    cli.check_device("--device", args.device)
    if not Path(args.checkpoint).exists():
        hint = "; train one with `bash train_fixed.sh`" if args.checkpoint == DEFAULT_CHECKPOINT else ""
        raise UserError(f"--checkpoint {args.checkpoint}: no such file or folder{hint}")
    return args


def port_in_use(host, port):
    return UserError(f"--port {port}: already in use on {host} (another app.py, or another server); stop it, or "
                     f"choose a free port with --port")


def check_port_free(host, port):
    """Refuse, before the model is loaded, a --host/--port the page could not be served on: the port in use (named
    with app.py's own --port, not Gradio's advice), or a host that is not this machine's."""
    try:
        family, kind, protocol, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as error:
        raise UserError(f"--host {host}: not an address of this machine ({error.strerror})") from None
    with socket.socket(family, kind, protocol) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds it
        try:
            probe.bind(address)
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise port_in_use(host, port) from None
            raise UserError(f"--host {host} --port {port}: cannot serve there ({error.strerror})") from None


# ----------------------------------------------------------------------------------------------------
# What the page writes
# ----------------------------------------------------------------------------------------------------
def shown_name(class_name):
    return class_name.replace("_", " ")


def percent(probability):
    return f"{probability:.0%}"


def facts_markdown(diagnoser):
    facts = diagnosis.model_facts(diagnoser.card)
    accuracy = facts["balanced_accuracy"]
    parts = [f"**{facts['model']}**", f"{facts['classes']} classes",
             f"trained {facts['trained'] or '(date not recorded)'}",
             "validation balanced accuracy " + (f"{accuracy:.1%}" if accuracy is not None else "(not recorded)"),
             f"{facts['image_size']} px input",
             f"tau {diagnoser.tau:g}" + (" (calibrated)" if facts["tau"] is not None else "")]
    return f"Model: {' · '.join(parts)} · `{diagnoser.path}`"


def unknown_markdown(answer):
    """An unknown photo's answer: no diagnosis, its closest class greyed beside it."""
    closest = answer["top"][0]
    return (f"### {UNKNOWN_PHOTO_TITLE}\nIt is unlike the photos of the classes it "
            f"was trained on (unknown score {answer['unknown']['score']:.3g}, above {answer['unknown']['threshold']:.3g})"
            f", so it gives no diagnosis. Closest class, greyed: "
            f"<span style='color:#9ca3af'>{shown_name(closest['name'])} ({percent(closest['probability'])})</span>.")


def reading_markdown(levels, min_confidence):
    lines = []
    for level in levels:
        title = LEVEL_TITLES.get(level["level"], level["level"].capitalize())
        if level["level"] == diagnosis.CLASS_LEVEL and len(levels) > 1:
            title = "Class (with severity)"
        if level["answer"] == hierarchy.UNKNOWN_LABEL:
            lines.append(f"### {title}: not sure\nBest guess {shown_name(level['best_guess'])}, probability "
                         f"{percent(level['probability'])}, below the {percent(min_confidence)} threshold.")
        else:
            lines.append(f"### {title}: {shown_name(level['answer'])}\nProbability {percent(level['probability'])}.")
    return "\n\n".join(lines)


# ----------------------------------------------------------------------------------------------------
# The page
# ----------------------------------------------------------------------------------------------------
def console_line(message):
    """One line on app.py's console (stderr) for a request the page refused: the page or API client gets the
    message, the console no traceback."""
    print(f"refused: {message}", file=sys.stderr, flush=True)


def photo_files_component(gr):
    """gr.File whose refusal of an upload (a file whose name is not an image's, e.g. a .txt sent through the API)
    reaches the client as Gradio's message and the console as one line naming the file, not as the traceback
    Gradio prints for every refused upload."""

    class PhotoFiles(gr.File):
        def get_block_name(self):
            return "file"  # the page draws it as the File component it is

        def _process_single_file(self, f):
            try:
                return super()._process_single_file(f)
            except gr.Error as error:
                console_line(f"{f.orig_name or Path(f.path).name}: {error.message}")
                raise gr.Error(error.message, print_exception=False) from None

    return PhotoFiles


def build_page(diagnoser, min_confidence):
    import gradio as gr

    card = diagnoser.card

    def diagnose(files, threshold):
        """The answers for the uploaded photos (the API's /diagnose) and the photos themselves (page state)."""
        if not files:
            return [], []
        try:
            photos = diagnoser.diagnose(files, [Path(path).name for path in files])
        except UserError as error:
            console_line(str(error))
            raise gr.Error(str(error), print_exception=False) from None
        return diagnosis.answers(photos, card, threshold), photos

    def reread(photos, threshold):
        """The answers again at another threshold, without running the model."""
        return diagnosis.answers(photos, card, threshold)

    with gr.Blocks(title="Leaf disease diagnosis", analytics_enabled=False,
                   delete_cache=(CACHE_LIFETIME_S, CACHE_LIFETIME_S)) as page:
        gr.Markdown("# Leaf disease diagnosis\n" + facts_markdown(diagnoser))
        with gr.Accordion(f"The {len(card['class_names'])} classes it knows", open=False):
            gr.Markdown(", ".join(shown_name(name) for name in card["class_names"]))
        with gr.Row():
            files = photo_files_component(gr)(label="Leaf photos: drop one or several, or tap to take one with a phone's camera",
                            file_count="multiple", file_types=["image"], scale=3, elem_id="photos")
            threshold = gr.Slider(0, 1, value=min_confidence, step=0.05, scale=2, elem_id="threshold",
                                  label="Say 'not sure' below this probability",
                                  info="At 0 it always answers; evaluate.py's coverage table shows what a "
                                       "threshold costs in photos answered and accuracy.")
        photos = gr.State([])
        with gr.Accordion("The answers as data (what the API returns)", open=False):
            answers = gr.JSON(show_label=False)

        @gr.render(inputs=[answers, photos, threshold], triggers=[answers.change])
        def show(answer_list, photo_list, shown_threshold):
            for answer, photo in zip(answer_list or [], photo_list or []):
                with gr.Group(elem_classes="photo-answer"):
                    if "problem" in answer:
                        gr.Markdown(f"**{answer['file']}** could not be read: {answer['problem']}",
                                    elem_classes=["problem"])
                        continue
                    with gr.Row(equal_height=True):
                        gr.Image(photo.crop, label=f"{answer['file']}: what the model saw", format="png",
                                 interactive=False, height=260, buttons=[], elem_classes=["photo-image"])
                        if answer["heat_map"]:
                            gr.Image(photo.overlay, label="Grad-CAM: where it looked for that class", format="png",
                                     interactive=False, height=260, buttons=[],
                                     elem_classes=["photo-image", "heat-map"])
                        else:
                            gr.Markdown("No heat map: Grad-CAM needs the PyTorch weights (the .pth or the "
                                        "exported folder), not the ONNX file.")
                        is_unknown = bool(answer["unknown"] and answer["unknown"]["is_unknown"])
                        with gr.Column():
                            if is_unknown:
                                gr.Markdown(unknown_markdown(answer), elem_classes=["reading", "unknown-photo"])
                            else:
                                gr.Markdown(reading_markdown(answer["reading"], shown_threshold),
                                            elem_classes=["reading"])
                            gr.Label({shown_name(top["name"]): top["probability"] for top in answer["top"]},
                                     num_top_classes=diagnosis.TOP_K, show_heading=False, show_label=False,
                                     elem_classes=["closest-classes"] if is_unknown else None)

        files.change(diagnose, [files, threshold], [answers, photos], api_name="diagnose")
        threshold.release(reread, [photos, threshold], [answers], api_visibility="private")
    return page


@cli_entry
def main(argv=None):
    args = parse_args(argv)
    check_port_free(args.host, args.port)
    device = runtime.resolve_device(args.device)
    diagnoser = diagnosis.Diagnoser(args.checkpoint, device)
    page = build_page(diagnoser, args.min_confidence)
    print(f"loaded {diagnoser.card['model_name']} from {args.checkpoint} ({device}); starting the page on "
          f"http://{args.host}:{args.port}")
    try:
        page.launch(server_name=args.host, server_port=args.port, share=False, show_error=True,
                    max_file_size=MAX_UPLOAD_SIZE, ssr_mode=False, pwa=False, mcp_server=False,
                    enable_monitoring=False, css=CSS)
    except OSError as error:
        if "Cannot find empty port" in str(error):  # taken since check_port_free
            raise port_in_use(args.host, args.port) from None
        raise UserError(f"--host {args.host} --port {args.port}: cannot serve there ({error})") from None


if __name__ == "__main__":
    main()
