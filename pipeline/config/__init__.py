"""Configuration: the shape of each group, the rules between keys, and the checks that
need the disk or the network, all run before any data or model loads.
"""
