"""Settings every test suite shares."""

from hypothesis import settings

# A shared 2-core CI machine can stall any single example; a timing-based Hypothesis failure
# would say nothing about the code. Properties are judged on their outcome only.
settings.register_profile("vipkeeper", deadline=None)
settings.load_profile("vipkeeper")
