"""The out-of-sample report (``python -m evaluation.report``) and walk-forward retraining: agents and baselines on the
same dates and costs, with intervals, deflated Sharpe, paired tests and figures."""
