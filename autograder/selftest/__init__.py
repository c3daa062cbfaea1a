"""The grader's own test data that is more than a planted mistake: a class of honest learners in many styles."""
