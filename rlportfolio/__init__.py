"""The ``rlportfolio`` console command (``rlportfolio.cli``): one command over every stage of the platform."""
