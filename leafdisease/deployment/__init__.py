"""Deployment: prediction with a checkpoint or an export (inference), the export formats and their checks (formats),
Grad-CAM (explain) and the diagnosis page's logic (diagnosis)."""
