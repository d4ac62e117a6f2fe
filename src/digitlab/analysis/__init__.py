"""Analysis: model summaries, figures, reports."""
