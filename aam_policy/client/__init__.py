"""aam_policy.client"""
