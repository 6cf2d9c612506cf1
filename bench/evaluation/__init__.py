"""Evaluation of a trained run: sacreBLEU and chrF, validation NLL and perplexity (evaluate), ROUGE (rouge)."""
