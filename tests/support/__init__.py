"""Helpers the tests share: servers they start (S3, PostgreSQL, a Ray head), exported agents, request bodies, the
A/B app. Fixtures live in the conftest.py files; these are plain functions and context managers, without asserts on
the behaviour under test (those stay in the test modules)."""
