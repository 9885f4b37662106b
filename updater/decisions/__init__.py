"""Pure verdicts over what a check read: what to do with a unit, whether it is healthy, whose
fault a failure is, what its definition defeats. No input or output of their own."""
