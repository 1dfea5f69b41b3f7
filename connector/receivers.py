"""Receivers for inbox signals: enqueue connector tasks once the writing transaction commits."""
