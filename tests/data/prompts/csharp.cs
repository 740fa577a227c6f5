using System;

public static class Text {
    public static string Reverse(string s) {
        <CURSOR>
    }
}
