"""The review application (FastAPI + Folium): issue work is under way; nothing is public yet."""
