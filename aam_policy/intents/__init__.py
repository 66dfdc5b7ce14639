"""aam_policy.intents"""
