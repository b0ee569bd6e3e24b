"""Estimators: RFM (rfm.py) and lin-RFM (linrfm.py)."""
