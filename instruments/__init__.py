"""Instrument contracts, serial transports, drivers, CV analysis and the driver registry."""
