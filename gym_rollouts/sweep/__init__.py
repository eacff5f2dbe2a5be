"""Sweeps and scale-out on top of Hydra: shard selection, per-job output naming, the sweep summary
callback and the merge of shard outputs. Hydra's own sweepers and launchers run the jobs; this
package only adds what our files need (no scheduler of its own).
"""
