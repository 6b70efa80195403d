//! Pure functions over captures: statistics, rollout, norms, diffs.
//! Empty for now; each analysis arrives as its own file here.
