"""The builds: plan the searches, run the read units, write the formats."""
