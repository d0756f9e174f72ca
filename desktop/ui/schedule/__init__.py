"""Scheduling screens: day and week views, booking, check-in, refused bookings."""
