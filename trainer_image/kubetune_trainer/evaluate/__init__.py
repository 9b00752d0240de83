"""The evaluate step: how good is the tuned model, and does it pass the gate before deploy?

``command`` computes perplexity on the validation set and BLEU / ROUGE-L on greedy generations,
and writes ``reports/metrics.json``. ``thresholds`` holds the pure gate the operator applies;
it imports nothing heavy so the operator can use it without torch.
"""
