"""The dashboard's page files, one per view (``dashboard.views.VIEWS``).

Streamlit runs each as a script by its file path (``st.Page(path)``); nothing imports this
package. It is a package only so that a wheel ships these files.
"""
